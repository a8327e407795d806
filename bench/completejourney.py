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

from bench import RESULTS, write_results
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
from training.pipeline import MODE_NAMES, Steps, client_records, neighbour_pool, train_all, with_exclusion
from training.preprocess import load_and_preprocess

log = logging.getLogger("bench.completejourney")


VARIANTS = ("cap10", "all")
TARGET_RATIO = 1.05  # the goal: 1.05x the best baseline's test NDCG@10 ...
TARGET_Z = 2.0  # ... with a paired difference of at least 2 standard errors
# Wide & Deep settings per variant, chosen on validation NDCG@10 only (results/completejourney.md says how);
# `tifu_overrides` adds the TIFU-KNN baseline's validated hyperparameters, so the wide part starts exactly
# at TIFU-KNN's ranking and validation scores that start as epoch 0.
RECIPE = [
    # every label of a basket (8% of baskets hold more than the default 32); the pairwise lambda loss (the
    # softmax and BCE losses moved the start away from what NDCG@10 rewards); the TIFU weights learn at
    # lr 1e-2, every other weight at 1e-5 (at more, the deep output layer drowned the start)
    "max_labels=128",
    "loss=lambda",
    "lr=1e-2",
    "rest_lr_scale=0.001",
]
CONFIGS: dict[str, list[str]] = {
    "cap10": RECIPE,
    # the newest 40 sessions (TIFU-KNN over them scores 0.3144 on validation, over 30 0.3130, over all
    # 0.3166); one model; an epoch bound for the bench's time
    "all": [*RECIPE, "max_sessions=40", "max_epochs=12", "ablations=false"],
}  # fmt: skip
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


def tifu_overrides(params: dict[str, float]) -> list[str]:
    """The W&D overrides that start its wide part at the TIFU-KNN baseline's validated hyperparameters."""
    return [
        f"tifu_group_size={int(params['group_size'])}",
        f"tifu_within={params['within']}",
        f"tifu_across={params['across']}",
        f"tifu_alpha={params['alpha']}",
        f"neighbours={int(params['k'])}",
    ]


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
            inputs = builder.build_batch(ex.histories, ex.genders, ex.ages)
            encoded[split] = (with_exclusion(inputs, ex.clnt_ids, records), ex)
    pool = neighbour_pool(builder, records) if config.neighbours > 0 else None
    results = train_all(schema, data, config, encoded, steps, pool=pool)
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
    pool_rows = results[config.mode].model.pool.shape
    facts["neighbour_pool"] = {
        "clients": pool_rows[0],
        "labels": pool_rows[1],
        "bytes": pool_rows.numel() * 4,
    }
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
    overrides = CONFIGS[variant] + tifu_overrides(params["TIFU-KNN"])
    config = load_config(None, overrides)
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
        "config_overrides": overrides,
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
    write_results("completejourney", results_json(runs, import_s), markdown(runs) + FINDINGS)
    for variant, run in runs.items():
        p = run["paired_ndcg@10"]
        log.info("%s: W&D %.4f vs %s %.4f, paired %+.4f ± %.4f", variant, run["test"]["W&D"]["ndcg@10"],
                 p["versus"], run["test"][p["versus"]]["ndcg@10"], p["mean"], p["se"])  # fmt: skip


FINDINGS = """
## What mattered (development runs: validation NDCG@10, one seed, nothing read off the test set)

The model now holds TIFU-KNN itself: `tifu_group_size`/`tifu_within`/`tifu_across` compute TIFU-KNN's
own-history vector in the graph from `hist` (groups of baskets counted from the newest, decay within and
across groups, mean over groups, per client from its number of non-empty sessions), the neighbour pool holds
the same vectors of every client's pre-validation history, and the neighbour feature becomes TIFU-KNN's
rule (the unweighted mean of the k Euclidean-nearest pool vectors, the own client excluded). The bench
passes the TIFU-KNN baseline's validated hyperparameters, so the wide part starts at
`scale * (alpha * own + (1 - alpha) * neighbours)` plus a 1e-5 G-Pop tie-breaker, with every other wide and
deep contribution at 0 (the deep output layer and gates zeroed): the untrained model ranks exactly as
TIFU-KNN (validation 0.2941 = 0.2941 in cap10; a unit test pins the ranking against
training/knn_baselines.py). Validation scores that start as "epoch 0", so early stopping may keep it.

cap10 (TIFU-KNN on validation: 0.2941)

| change from the TIFU start (scale 10) | valid NDCG@10 (best epoch) |
|---|---|
| the start itself (epoch 0) | 0.2941 |
| train everything, softmax loss, lr 3e-4 / 3e-5 | 0.2847 / 0.2926 at epoch 1 (start kept) |
| the same, wide part only, lr 3e-4 / 3e-5 | 0.2934 / 0.2938 at epoch 1 (start kept) |
| softmax, only the shared own / neighbour / repeat weights, lr 1e-2 | 0.2826 at epoch 1 |
| the same, trained on the validation targets themselves (diagnostic) | 0.2918 at epoch 1 |
| softmax, only the TIFU weights (shared + per-label offsets), lr 1e-2 | 0.2941 (0) |
| lambda loss, only the per-label offsets of the TIFU and repeat weights | 0.2868 at epoch 1 |
| lambda loss, only the deep part's gates (MLP + TIFU gate) | 0.2920 at epoch 1 |
| **lambda loss, TIFU weights at lr 1e-2, the rest at 1e-5** (`rest_lr_scale=0.001`) | **0.2959 (4)** |
| the same, other weights frozen / at 3e-5 (lr 3e-3) / at 1e-4 | 0.2960 (4) / 0.2956 (3) / 0.2941 (0) |
| the same, lr 3e-2 | 0.2951 (1) |
| the same, seeds 43 / 44 instead of 42 (model init and shuffling) | 0.2961 (3) / 0.2959 (4) |
| the same, start scale 5 / 20 | 0.2941 (0) / 0.2945 (3) |
| (instead) "due now": sessions since the last purchase / the label's mean gap, weight tuned | <= 0.2945 |
| (instead) the previous P-Pop-start model blended with TIFU, weight tuned | <= 0.2944 |
| deep-only with the lambda loss, lr 1e-2 (previous deep-only: 0.2818) | 0.2876 (12) |

`all` (TIFU-KNN on validation: 0.3166 over every session; the model sees the newest `max_sessions`)

| change | valid NDCG@10 (best epoch) |
|---|---|
| TIFU-KNN over the newest 30 / 40 / 60 sessions (the start at 40: epoch 0) | 0.3130 / 0.3144 / 0.3142 |
| train everything, softmax, lr 1e-4 | 0.2997 at epoch 1 (start kept) |
| lambda, only the TIFU weights, lr 1e-2 | 0.3179 (8) |
| **the same, every other weight at 1e-5** (`rest_lr_scale=0.001`) | **0.3198 (8)** |
| the same, other weights at 3e-5 / 1e-4 | 0.3196 (7) / 0.3200 (2) |
| 24 instead of 12 training targets per client (twice the time) | 0.3167 vs 0.3164 after 2 epochs (stopped) |

- The softmax and BCE losses are at odds with NDCG@10 here: trained on ~5.6k targets, even three shared
  weights drift away from the start, and they do so when trained on the validation targets themselves. They
  reward putting probability on every label of the next basket (half of it labels the client never bought),
  which NDCG@10's top 10 (mostly repeats) does not. The lambda loss (LambdaRank: a pairwise logistic loss over
  each row's 50 top-scored labels, each pair weighted by its DCG swap) trains toward the top-10 order, and
  was the first training that improved on the start in both variants (deep-only too: 0.2818 -> 0.2876).
- Adam moves every weight by about lr per step whatever its fan-in, so the deep output layer (64 x N) and the
  crosses moved the logits more than the TIFU weights: every other weight learns at 1/1000 of the rate.
- In cap10 the gain is within the seed-to-seed spread (+0.0018); in `all` it is +0.0054 over the start and
  +0.0032 over TIFU-KNN on validation (more, longer training targets for the per-label offsets).
- Ablations (cap10, test / validation NDCG@10): wide-only 0.2900 / 0.2963, W&D 0.2896 / 0.2959, deep-only
  0.2821 / 0.2876. The wide part's TIFU start and its trained per-label offsets carry the gain; the deep part,
  learning at 1e-5 beside it, adds nothing measurable (-0.0004 on both splits, far inside the noise). Alone,
  trained with the lambda loss, it reaches 0.2821, near P-Pop: it has learnt the repeats, not something the
  wide part lacks.
- `all`: TIFU over the newest 40 sessions starts 0.0022 below the baseline on validation (which sees up to
  ~130 sessions); training makes that up and more. 40 sessions cost presence tensors of 256 x 40 x 2,135
  floats per batch (peak RSS 2.1 GB, 295 s of training).

Earlier recipe (before the TIFU start; cap10, validation / test NDCG@10): the model's defaults 0.2805 /
0.2761; every label of a basket 0.2796; a P-Pop warm start of the wide part (`repeat_init=2`) 0.2861 /
0.2838; plus a cosine user-KNN neighbour feature, no G-Pop bias, softmax loss, lr 3e-4: 0.2900 / 0.2833.
Nothing else tried there (listwise loss alone, weight decay, a smaller tower, a wider co-purchase map, seed
ensembling of 3) moved validation by more than the seed-to-seed spread (about 0.002). Every run peaked at
epoch 1: training moved the model away from its start, which the TIFU start and the lambda loss now avoid.

Verdict: Wide & Deep now scores above every baseline on test NDCG@10 and Recall@10 in both variants: cap10
0.2896 / 0.1978 against TIFU-KNN's 0.2876 / 0.1970 (paired NDCG@10 difference +0.0020 ± 0.0017, z = 1.2:
not significant), `all` 0.3106 / 0.2133 against 0.3053 / 0.2073 (+0.0053 ± 0.0020, z = 2.6). The goal of
1.05x the best baseline is not met: the ratios are 1.007 and 1.017. Before this change W&D trailed
TIFU-KNN by -0.0044 ± 0.0018 (cap10) and -0.0071 ± 0.0022 (`all`). The model is TIFU-KNN plus learned
per-label corrections; a 5% lead would need a signal TIFU-KNN lacks, and none of the ones tried (demographic
crosses, co-purchase, repeat timing, the deep tower) showed one on 801 households.
"""


if __name__ == "__main__":
    main()
