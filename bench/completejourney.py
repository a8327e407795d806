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
# Wide & Deep settings per variant, chosen on validation NDCG@10 only (results/completejourney.md says how).
CONFIGS: dict[str, list[str]] = {
    # Every label of a basket (8% of baskets hold more than the default 32); the in-graph user-KNN feature
    # (100 neighbours), started at own counts + neighbour votes with no global-popularity bias, trained
    # gently with a listwise loss (with the G-Pop bias and BCE it scored 0.2839 on validation instead).
    "cap10": [
        "max_labels=128", "bias_init=0.0", "repeat_init=4.0", "loss=softmax", "lr=3e-4",
        "neighbours=100", "neighbour_init=4.0",
    ],
    # Seeing 30 sessions (recency P-Pop's validated decay 0.95 looks ~20 sessions back); one model. The same
    # recipe with 50 neighbours and both shared weights from 2 (validation: see completejourney.md).
    "all": [
        "max_labels=128", "bias_init=0.0", "repeat_init=2.0", "loss=softmax", "lr=3e-4",
        "neighbours=50", "neighbour_init=2.0", "max_sessions=30", "ablations=false",
    ],
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
    write_results("completejourney", results_json(runs, import_s), markdown(runs) + FINDINGS)
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
| P-Pop warm start of the wide part (`repeat_init=2.0`) | 0.2861 | 0.2838 |
| (instead) warm start 1.0 / 6.0 | 0.2829 / 0.2842 | |
| (instead) listwise softmax loss | 0.2827 | 0.2798 |
| (instead) weight decay 1e-2 / an extra L2 of 0.1 on the per-label weights | 0.2856 / +0.001 | |
| (instead) deep tower 128-64 instead of the seed's 512-256-128-64 | 0.2854 | |
| (instead) co-purchase rank 64 / fed the share vector instead of the 0.5-decayed counts | 0.2824 / 0.2856 | |
| (instead) mean logits of 3 seeds (members 0.2861, 0.2845, 0.2840) | 0.2835 | 0.2830 |
| + user-KNN feature (`neighbours=100`), its weight from 1 / 3 / 0 | 0.2839 / 0.2832 / 0.2860 | |
| (instead) the same from 1.0 without the per-label offsets | 0.2834 | |
| neighbours, bias from 0 (`bias_init=0`), own counts and neighbours from 4 | 0.2824 | |
| the same, softmax loss, lr 1e-3 / **3e-4** / 1e-4 | 0.2869 / **0.2900** / 0.2896 | / **0.2833** / |

For reference, on validation: P-Pop 0.2881, TIFU-KNN 0.2941 (cap10). In `all` (validation): the previous
recipe without neighbours 0.3056; cap10's recipe with 50 neighbours (softmax, bias from 0, lr 3e-4) and
the own-count / neighbour weights from 4 / 3: 0.3015 (lr 1e-4: 0.3012), from 2 / 1: 0.3052, from
**2 / 2: 0.3063** (chosen).

- The wide part's repeat features carry the model. Deep-only trails wide-only by 0.004-0.013.
- Starting the shared weight of log1p(own count) at 2 (with the bias at G-Pop log-odds) was the first clear
  gain (+0.0065). From zero, SGD on ~5.6k targets reaches P-Pop's ordering late and noisily.
- The in-graph neighbour feature (new): each client's history vector (labels weighted 0.9^sessions ago,
  L2-normalised), its cosine to a pool of every client's pre-validation vector (a buffer in model.pt:
  801 x 1,698 x 4 B = 5.4 MB in cap10, 801 x 2,135 x 4 B = 6.8 MB in `all`), the similarity-weighted mean
  of the k nearest (the own client excluded in training and evaluation), scaled to a row maximum of 1, with
  a shared weight plus a per-label offset. Scored without any training (validation, cap10): P-Pop-style own
  counts mixed 50/50 with it reach 0.2926 (TIFU-KNN 0.2941), but added to own counts *and* the G-Pop
  log-odds bias it gains nothing (0.2847 -> 0.2860): both say "popular", and the bias wins. Only with the
  bias started at 0 (`bias_init=0`), so the neighbours' popularity replaces the global one, and a listwise
  loss that does not pull the bias back to calibrated log-odds, did it pay: +0.0039 on validation (0.2900 vs
  0.2861), but only -0.0005 on test (0.2833 vs 0.2838), and the wide-only ablation did better on both.
  Every neighbour run peaks at epoch 1: training on ~5.6k targets moves the model away from its start.
- Nothing else tried moved validation NDCG@10 by more than the seed-to-seed spread (about 0.002): not the
  listwise loss alone, not heavier regularisation, not a smaller tower, not a wider co-purchase map, and
  not seed ensembling (averaging logits of three seeds scored below the best member).
- In `all`, the model sees each client's 30 newest sessions and trains on each client's 12 newest targets
  (of ~75): compute, not validation, set those two numbers.

Verdict: the goal (1.05x the best baseline with a paired difference of at least 2 SE) is not met; with the
neighbour feature W&D still trails TIFU-KNN on test in both variants (tables above). Against the previous
run without it (test NDCG@10 / paired difference to TIFU-KNN): cap10 0.2838 / -0.0039 ± 0.0025 before,
0.2833 / -0.0044 ± 0.0018 now; `all` 0.2985 / -0.0068 ± 0.0027 before, 0.2982 / -0.0071 ± 0.0022 now.
Its validation gains (+0.0039 cap10, +0.0007 `all`) did not carry to the test basket. The neighbour
signal is in the graph now; what it lacks is a way to train on it: the start point scores better than
what ~6k targets train it to. Worth trying next: freezing the start point for the first epochs (train the
deep part only), more training targets (every target in `all`), or a per-client mixing weight from the
deep part instead of one shared weight.
"""


if __name__ == "__main__":
    main()
