"""The "new to you" term's weight, chosen on validation once a model is trained.

The service gives two rankings from one score per label: every label (what the lambda loss trains for, and
mostly repeats), and with `exclude_bought` the labels new to the client, where EASE's label-label map is
stronger than anything the model learns (results/completejourney.md). The wide part adds that map's score to
the labels a history lacks (`Wide.explore`), times the weight here: the one of `WEIGHTS` with the highest
validation NDCG@10 of the two rankings summed, each weighed alike (the smallest on a tie; 0 keeps the model
as trained). The term is added after the deep part has chosen its candidates (from the logits it was
trained with), so a weight moves only the labels new to the client.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from training.evaluate import bought_labels, model_scores, without_bought
from training.features import Examples
from training.metrics import mean_ndcg
from training.model import WideAndDeep
from training.train import EncodedSplit

log = logging.getLogger(__name__)

WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0)  # in units of a row's largest EASE score


def new_to_you_ndcg(scores: np.ndarray, examples: Examples) -> float:
    """NDCG@10 of the ranking without each history's labels against the target's new labels, over the
    examples that have any: the "new to you" ranking of the repeat / explore report (training/metrics.py)."""
    bought = bought_labels(examples)
    new = [set(target) - held for target, held in zip(examples.targets, bought, strict=True)]
    rows = [row for row, labels in enumerate(new) if labels]
    return mean_ndcg(without_bought(scores, bought)[rows], [new[row] for row in rows]) if rows else 0.0


def choose_explore_weight(model: WideAndDeep, valid: EncodedSplit) -> dict[str, Any]:
    """Set `model`'s explore weight to the best of WEIGHTS on `valid` and say what each one scored; a model
    without a wide part or without EASE's map keeps 0."""
    if not model.use_wide or model.wide.explore_map.shape[0] == 0:
        return {"weight": 0.0, "valid": {}}
    truths = [set(t) for t in valid.examples.targets]
    tried: dict[str, dict[str, float]] = {}
    best = (-1.0, 0.0)
    for weight in WEIGHTS:
        with torch.no_grad():
            model.wide.explore_weight.fill_(weight)
        scores = model_scores(model, valid.inputs, valid.exclude)
        ndcg, new = mean_ndcg(scores, truths), new_to_you_ndcg(scores, valid.examples)
        tried[str(weight)] = {"ndcg@10": ndcg, "new_ndcg@10": new}
        if ndcg + new > best[0]:
            best = (ndcg + new, weight)
    with torch.no_grad():
        model.wide.explore_weight.fill_(best[1])
    log.info("explore weight %g chosen on validation: %s", best[1], tried[str(best[1])])
    return {"weight": best[1], "valid": tried}
