"""Benchmark: Wide & Deep against the strongest simple baselines on 84.51's "The Complete Journey".

    .venv/bin/python -m bench.completejourney [--variants cap10 all] [--data results/tmp/completejourney]

adapter (`wdrec import-completejourney`) -> preprocess (profiles completejourney-cap10 / -all) -> G-Pop,
P-Pop, recency-weighted P-Pop, ItemKNN, TIFU-KNN (hyperparameters chosen on validation) -> Doc2Vec + Wide &
Deep and its wide-only / deep-only ablations (config chosen on validation, below) -> test metrics of every
method with the same split and metric code, and the per-client paired difference of NDCG@10, W&D minus the
best baseline, with its standard error. Writes results/completejourney.json and results/completejourney.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import multiprocessing
import platform
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from training.baselines import fit_baselines
from training.completejourney import import_completejourney
from training.config import TrainConfig, load_config
from training.dataset import ProcessedData
from training.doc2vec import Doc2VecEncoder, train_doc2vec
from training.evaluate import model_rankings, top_k
from training.features import (
    ClientRecord,
    Examples,
    FeatureBuilder,
    FeatureSchema,
    history_before_valid,
    split_examples,
)
from training.knn_baselines import run_knn_baselines
from training.knn_baselines import split_examples as knn_examples
from training.metrics import KS, ndcg_at_k, ranking_report
from training.pipeline import MODE_NAMES, Steps, client_records, train_all
from training.preprocess import load_and_preprocess

log = logging.getLogger("bench.completejourney")

RESULTS = Path("results")
VARIANTS = ("cap10", "all")
TARGET_RATIO = 1.05  # the goal: 1.05x the best baseline's test NDCG@10 ...
TARGET_Z = 2.0  # ... with a paired difference of at least 2 standard errors
# Wide & Deep settings per variant, chosen on validation NDCG@10 only (results/completejourney.md says how).
CONFIGS: dict[str, list[str]] = {
    # Every label of a basket (8% of baskets hold more than the default 32), and a P-Pop warm start.
    "cap10": ["max_labels=128", "repeat_init=2.0"],
    # The same, seeing 30 sessions (recency P-Pop's validated decay 0.95 looks ~20 sessions back); one model.
    "all": ["max_labels=128", "repeat_init=2.0", "max_sessions=30", "ablations=false"],
}
# `all` has ~60k training targets: train on each client's newest few (the model's cost is per target and
# per kept session, and old targets say least about the next basket).
TRAIN_TARGETS_PER_CLIENT: dict[str, int | None] = {"cap10": None, "all": 12}
BASELINE_NAMES = ("G-Pop", "P-Pop", "P-Pop (recency)", "ItemKNN", "TIFU-KNN")

Rankings = dict[str, dict[str, list[list[int]]]]  # method -> split -> ranked label ids per client


def baseline_rankings(
    data: ProcessedData, records: Sequence[ClientRecord]
) -> tuple[Rankings, dict[str, Any]]:
    """Each baseline's top-k on the valid and test targets (clients in CLNT_ID order) and chosen params."""
    k = max(KS)
    rankings: Rankings = {}
    for baseline in fit_baselines([history_before_valid(r) for r in records], data.vocab.n_labels):
        rankings[baseline.name] = {
            split: top_k(baseline.score(split_examples(records, split).histories), k)
            for split in ("valid", "test")
        }
    params = {}
    for result in run_knn_baselines(data):
        rankings[result.name] = {"valid": top_k(result.valid_scores, k), "test": top_k(result.test_scores, k)}
        params[result.name] = result.params
    return rankings, params


def newest_targets(examples: Examples, records: Sequence[ClientRecord], per_client: int) -> Examples:
    """Each client's `per_client` newest training examples (a target at position t has t history sessions)."""
    n_sessions = {r.clnt_id: len(r.sessions) for r in records}
    keep = [
        i
        for i, (c, h) in enumerate(zip(examples.clnt_ids, examples.histories, strict=True))
        if len(h) >= n_sessions[c] - 2 - per_client
    ]
    return Examples(*([getattr(examples, f.name)[i] for i in keep] for f in dataclasses.fields(Examples)))


def model_runs(
    data: ProcessedData, records: Sequence[ClientRecord], config: TrainConfig, steps: Steps, *,
    per_client: int | None,
) -> tuple[Rankings, dict[str, Any]]:  # fmt: skip
    """Doc2Vec + Wide & Deep (and, if config.ablations, wide-only and deep-only): top-k and training facts."""
    with steps.step("doc2vec+features"):
        corpus = [s for r in records for s in history_before_valid(r)]
        encoder = Doc2VecEncoder(
            train_doc2vec(corpus, data.vocab.labels, config),
            data.vocab.labels,
            epochs=config.d2v_infer_epochs,
            seed=config.seed,
        )
        schema = FeatureSchema.create(data.vocab, config)
        builder = FeatureBuilder(data.vocab, schema, encoder)
        encoded = {}
        for split in ("train", "valid", "test"):
            ex = split_examples(records, split)
            if split == "train" and per_client is not None:
                ex = newest_targets(ex, records, per_client)
            encoded[split] = (builder.build_batch(ex.histories, ex.genders, ex.ages), ex)
    results = train_all(schema, data, config, encoded, steps)
    rankings: Rankings = {
        MODE_NAMES[mode]: {
            split: model_rankings(r.model, encoded[split][0], max(KS)) for split in ("valid", "test")
        }
        for mode, r in results.items()
    }
    facts: dict[str, Any] = {
        MODE_NAMES[mode]: {
            "best_epoch": r.best_epoch,
            "epochs": len(r.curve),
            "seconds": round(r.seconds, 1),
            "best_valid_ndcg@10": round(r.best_valid_ndcg, 4),
        }
        for mode, r in results.items()
    }
    facts["train_targets"] = len(encoded["train"][1])
    return rankings, facts


def paired_difference(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """Mean of the per-client differences a - b, its standard error (sample sd / sqrt n) and mean / se."""
    diff = np.asarray(a) - np.asarray(b)
    se = float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else float("nan")
    mean = float(diff.mean())
    return {"mean": mean, "se": se, "z": mean / se if se > 0 else float("nan"), "n": len(diff)}


def per_client_ndcg(
    rankings: Sequence[Sequence[int]], truths: Sequence[set[int]], k: int = 10
) -> list[float]:
    return [ndcg_at_k(r, t, k) for r, t in zip(rankings, truths, strict=True)]


def run_variant(data_dir: Path, variant: str) -> dict[str, Any]:
    """All methods on one variant: tables of valid and test metrics, the paired difference, timings."""
    steps = Steps()
    with steps.step("preprocess"):
        data = load_and_preprocess(data_dir, profile=f"completejourney-{variant}")
        records = client_records(data)
    clients = [r.clnt_id for r in records]
    if clients != knn_examples(data, "test").clients.tolist():
        raise RuntimeError("the baselines and the model must see the clients in the same order")
    with steps.step("baselines"):
        rankings, params = baseline_rankings(data, records)
    config = load_config(None, CONFIGS[variant])
    model_rank, facts = model_runs(data, records, config, steps, per_client=TRAIN_TARGETS_PER_CLIENT[variant])
    rankings.update(model_rank)
    truths = {split: [set(t) for t in split_examples(records, split).targets] for split in ("valid", "test")}
    tables = {
        split: {
            m: ranking_report(r[split], truths[split], data.vocab.n_labels, KS) for m, r in rankings.items()
        }
        for split in ("valid", "test")
    }
    best = max(BASELINE_NAMES, key=lambda m: tables["test"][m]["ndcg@10"])
    ndcg = {m: per_client_ndcg(r["test"], truths["test"]) for m, r in rankings.items()}
    paired = paired_difference(ndcg["W&D"], ndcg[best]) | {"versus": best}
    paired["ratio"] = tables["test"]["W&D"]["ndcg@10"] / tables["test"][best]["ndcg@10"]
    return {
        "clients": len(records),
        "labels": data.vocab.n_labels,
        "test": tables["test"],
        "valid": tables["valid"],
        "paired_ndcg@10": paired,
        "baseline_params": params,
        "config_overrides": CONFIGS[variant],
        "training": facts,
        "timings": steps.timings,
    }


def results_json(runs: dict[str, dict[str, Any]], import_s: float) -> dict[str, Any]:
    """variant -> method -> metric -> value (test), then the paired differences and the facts."""
    out: dict[str, Any] = {variant: run["test"] for variant, run in runs.items()}
    out["paired_difference"] = {variant: run["paired_ndcg@10"] for variant, run in runs.items()}
    out["valid"] = {variant: run["valid"] for variant, run in runs.items()}
    out["details"] = {
        variant: {k: v for k, v in run.items() if k not in ("test", "valid", "paired_ndcg@10")}
        for variant, run in runs.items()
    }
    out["import_seconds"] = round(import_s, 1)
    out["machine"] = {"python": platform.python_version(), "platform": platform.platform()}
    return out


COLUMNS = ("ndcg@10", "recall@10", "hit_rate@10", "map@10", "ndcg@20", "recall@20")


def markdown(runs: dict[str, dict[str, Any]]) -> str:
    """The results tables and the verdict per variant (the narrative is appended from FINDINGS)."""
    lines = ["# The Complete Journey: Wide & Deep against the strongest simple baselines", ""]
    lines += [
        "`.venv/bin/python -m bench.completejourney`: 84.51's The Complete Journey via the L.POINT adapter. "
        "Protocol: no HITS_SEQ rule, age required, sessions with >= 2 distinct product types (CLAC3), "
        "clients with >= 10 such sessions; test = newest session, validation = the one before; "
        "every hyperparameter chosen on validation only. Test metrics below.",
        "",
    ]
    for variant, run in runs.items():
        p = run["paired_ndcg@10"]
        lines += [f"## {variant} ({run['clients']} clients, {run['labels']} labels)", ""]
        lines += ["| method | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
        for method, metrics in run["test"].items():
            lines.append(f"| {method} | " + " | ".join(f"{metrics[c]:.4f}" for c in COLUMNS) + " |")
        met = p["ratio"] >= TARGET_RATIO and p["z"] >= TARGET_Z
        lines += [
            "",
            f"W&D minus {p['versus']} (the best baseline on test NDCG@10), per client: "
            f"{p['mean']:+.4f} ± {p['se']:.4f} (SE), z = {p['z']:.2f}; ratio {p['ratio']:.3f} "
            f"(goal >= {TARGET_RATIO} with z >= {TARGET_Z}: {'met' if met else 'not met'}).",
            f"Baseline hyperparameters (validation): {json.dumps(run['baseline_params'])}. "
            f"W&D overrides: {run['config_overrides'] or 'defaults'}.",
            f"Training: {json.dumps(run['training'])}.",
            "",
        ]
    return "\n".join(lines)


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("gensim").setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--data", type=Path, default=RESULTS / "tmp" / "completejourney")
    args = parser.parse_args(argv)
    setup_logging()
    started = time.perf_counter()
    import_completejourney(args.data)
    import_s = time.perf_counter() - started
    # One process per variant: each trains with one torch thread, so two variants use both cores. Spawned,
    # not forked: a fork of a process whose polars thread pool already ran can deadlock.
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(len(args.variants), mp_context=spawn, initializer=setup_logging) as pool:
        futures = {variant: pool.submit(run_variant, args.data, variant) for variant in args.variants}
        runs = {variant: future.result() for variant, future in futures.items()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "completejourney.json").write_text(json.dumps(results_json(runs, import_s), indent=1))
    (RESULTS / "completejourney.md").write_text(markdown(runs) + FINDINGS)
    for variant, run in runs.items():
        p = run["paired_ndcg@10"]
        log.info("%s: W&D %.4f vs %s %.4f, paired %+.4f ± %.4f", variant, run["test"]["W&D"]["ndcg@10"],
                 p["versus"], run["test"][p["versus"]]["ndcg@10"], p["mean"], p["se"])  # fmt: skip


FINDINGS = """
## What mattered (development runs: cap10, validation NDCG@10, one seed, nothing read off the test set)

| change (cumulative unless marked) | valid NDCG@10 | test NDCG@10 |
|---|---|---|
| the model's defaults (BCE, AdamW lr 1e-3, dropout 0.5, 32 labels per session) | 0.2805 | 0.2761 |
| every label of a basket (`max_labels=128`; 8% of baskets hold more than 32 types) | 0.2796 | 0.2752 |
| P-Pop warm start of the wide part (`repeat_init=2.0`) | **0.2861** | **0.2838** |
| (instead) warm start 1.0 / 6.0 | 0.2829 / 0.2842 | |
| (instead) listwise softmax loss | 0.2827 | 0.2798 |
| (instead) weight decay 1e-2 / an extra L2 of 0.1 on the per-label weights | 0.2856 / +0.001 | |
| (instead) deep tower 128-64 instead of the seed's 512-256-128-64 | 0.2854 | |
| (instead) co-purchase rank 64 / fed the share vector instead of the 0.5-decayed counts | 0.2824 / 0.2856 | |
| (instead) mean logits of 3 seeds (members 0.2861, 0.2845, 0.2840) | 0.2835 | 0.2830 |
| (ablation) wide part only, with the warm start | 0.2852 | 0.2836 |

For reference, on validation: P-Pop 0.2881, TIFU-KNN 0.2941 (cap10).

- The wide part's repeat features carry the model: wide-only is within 0.001 of W&D on validation (0.0002
  on test); the deep tower adds that much at best. Deep-only trails by 0.006-0.013.
- Starting the shared weight of log1p(own count) at 2 (with the bias at G-Pop log-odds) was the one clear
  gain (+0.0065). From zero, SGD on ~5.6k targets reaches P-Pop's ordering late and noisily.
- Nothing else tried moved validation NDCG@10 by more than the seed-to-seed spread (about 0.002): not the
  listwise loss, not heavier regularisation, not a smaller tower, not a wider co-purchase map, and not
  seed ensembling (averaging logits of three seeds scored below the best member).
- TIFU-KNN's edge is its user-user neighbours (validation chose alpha 0.3: 70% of the score from the
  100 nearest clients). An item-item model cannot stand in for that here: a closed-form EASE map over the
  training baskets mixed with P-Pop reached only 0.2891 on validation (0.2842 test), so a fuller
  co-purchase term in the wide part would not close the gap either.
- In `all`, the model sees each client's 30 newest sessions and trains on each client's 12 newest targets
  (of ~75): compute, not validation, set those two numbers (about 6 minutes of training on 2 busy cores).
  It beats plain P-Pop there but not recency-weighted P-Pop, whose validated decay is 0.95 per session;
  the model's decayed counts use 0.5 and 0.8, so a slower decay feature is the next thing to try.

Verdict: the goal (1.05x the best baseline with a paired difference of at least 2 SE) is not met. What would
be worth trying next: a neighbour term in the graph (the training clients' TIFU vectors as a buffer, which
does not scale to L.POINT's client count), or training on many more targets than 801 clients provide.
"""


if __name__ == "__main__":
    main()
