"""`wdrec train`: preprocess -> Doc2Vec -> examples -> Wide & Deep (+ ablations) -> evaluate -> export.

Each step's output is a value handed to the next; `Steps` records each step's wall time and peak RSS
(metadata["timings"], read by bench/train.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import logging
import platform
import resource
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from training.artifacts import write_artifacts
from training.baselines import Baseline, Ease, Pool, fit_baselines
from training.config import MODE_NAMES, TrainConfig, load_config
from training.cycles import label_gaps
from training.dataset import ProcessedData, Vocabulary
from training.doc2vec import Doc2VecEncoder, train_doc2vec
from training.evaluate import MetricTable, evaluate_scores, model_card, model_scores, write_report
from training.explore import choose_explore_weight
from training.features import (
    ClientRecord,
    FeatureBuilder,
    FeatureSchema,
    history_before_valid,
    split_examples,
)
from training.metrics import mean_ndcg
from training.products import build_product_tables
from training.train import EncodedSplit, TrainResult, build_model, train_model

log = logging.getLogger(__name__)

LIBRARIES = ("torch", "gensim", "numpy", "polars", "pyarrow", "wdrec")
SPLITS = ("train", "valid", "test")
EVAL_SPLITS = ("valid", "test")


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


class Steps:
    """Times named steps and samples the process's RSS every 50 ms to get each step's peak."""

    def __init__(self) -> None:
        self.timings: dict[str, dict[str, float]] = {}

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        peak, done = [_rss_mb()], threading.Event()

        def sample() -> None:
            while not done.wait(0.05):
                peak[0] = max(peak[0], _rss_mb())

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.perf_counter()
        try:
            yield
        finally:
            done.set()
            sampler.join()
            seconds = time.perf_counter() - started
            self.timings[name] = {
                "seconds": round(seconds, 3),
                "peak_rss_mb": round(max(peak[0], _rss_mb()), 1),
            }
            log.info("step %s: %.1f s, peak RSS %.0f MB", name, seconds, self.timings[name]["peak_rss_mb"])


def data_fingerprint(data_dir: Path) -> str:
    """SHA-256 over the names and bytes of the data folder's CSV files (first 16 hex digits)."""
    digest = hashlib.sha256()
    for path in sorted(Path(data_dir).glob("*.csv")):
        digest.update(path.name.encode())
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def client_records(data: ProcessedData) -> list[ClientRecord]:
    days = data.client_days()
    return [ClientRecord(c, g, a, sessions, days[c]) for c, g, a, sessions, _ in data.client_histories()]


def clients_frame(records: Sequence[ClientRecord]) -> pl.DataFrame:
    """clients.parquet: demographics and every kept session (oldest first) per client."""
    return pl.DataFrame(
        {
            "CLNT_ID": [r.clnt_id for r in records],
            "gender": [r.gender for r in records],
            "age": [r.age for r in records],
            "sessions": [r.sessions for r in records],
            "days": [r.session_days for r in records],
        },
        schema_overrides={"days": pl.List(pl.Int32)},
    )


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    return versions


def encode_splits(
    builder: FeatureBuilder, records: Sequence[ClientRecord], pool: Pool, config: TrainConfig
) -> dict[str, EncodedSplit]:
    """Each split's examples and inputs (hist stored as int32 to halve memory) with each example's own
    neighbour-pool row; "train" keeps each client's `data.train_targets_per_client` newest targets."""
    encoded = {}
    for split in SPLITS:
        newest = config.data.train_targets_per_client if split == "train" else None
        ex = split_examples(records, split, newest=newest)
        inputs = builder.build_examples(ex)
        encoded[split] = EncodedSplit(
            ex, inputs._replace(hist=inputs.hist.int()), pool.neighbour_row_of(ex.clnt_ids)
        )
    return encoded


def fit_encoder(records: Sequence[ClientRecord], vocab: Vocabulary, config: TrainConfig) -> Doc2VecEncoder:
    """Doc2Vec on context and train-target sessions only (never a validation or test session)."""
    corpus = [s for r in records for s in history_before_valid(r)]
    model = train_doc2vec(corpus, vocab.labels, config)
    return Doc2VecEncoder(model, vocab.labels, epochs=config.doc2vec.infer_epochs, seed=config.seed)


def choose_start(
    config: TrainConfig, baselines: Sequence[Baseline], valid_ndcg: Mapping[str, float]
) -> Baseline | None:
    """The baseline the wide part starts at: the configured one, or ("auto") the best on validation."""
    if config.start.baseline == "none":
        return None
    wanted: str = config.start.baseline
    if wanted == "auto":
        wanted = max(valid_ndcg, key=lambda name: valid_ndcg[name])
    return next(b for b in baselines if b.name == wanted)


def train_all(
    schema: FeatureSchema,
    vocab: Vocabulary,
    config: TrainConfig,
    splits: dict[str, EncodedSplit],
    steps: Steps,
    *,
    start_from: Baseline | None,
    pool_hist: torch.Tensor,
    label_gap: np.ndarray,
    explore_map: torch.Tensor | None,
) -> tuple[dict[str, TrainResult], dict[str, dict[str, Any]]]:
    """The configured model, then (if config.ablations) the other two modes, each with its "new to you"
    weight chosen on validation (and what each weight scored there); each mode's config is
    `config.with_mode` (a deep-only model has no wide part to start)."""
    modes = [config.model.mode] + (
        [m for m in MODE_NAMES if m != config.model.mode] if config.ablations else []
    )
    results, explore = {}, {}
    for mode in modes:
        mode_config = config.with_mode(mode)  # type: ignore[arg-type]
        with steps.step(f"train_{mode}"):
            model = build_model(
                schema,
                vocab,
                mode_config,
                targets=splits["train"].examples.targets,
                start_from=start_from if mode_config.start.baseline != "none" else None,
                pool_hist=pool_hist,
                label_gap=label_gap.tolist(),
                explore_map=explore_map,
            )
            results[MODE_NAMES[mode]] = train_model(
                model, mode_config, train=splits["train"], valid=splits["valid"]
            )
            explore[MODE_NAMES[mode]] = choose_explore_weight(model, splits["valid"])
    return results, explore


def evaluate_all(
    results: Mapping[str, TrainResult],
    baseline_scores: Mapping[str, Mapping[str, np.ndarray]],
    splits: Mapping[str, EncodedSplit],
    n_labels: int,
) -> dict[str, MetricTable]:
    """valid and test tables: every trained model, then every baseline."""
    metrics: dict[str, MetricTable] = {}
    for split in EVAL_SPLITS:
        encoded = splits[split]
        scores = {name: model_scores(r.model, encoded.inputs, encoded.exclude) for name, r in results.items()}
        scores.update(baseline_scores[split])
        metrics[split] = evaluate_scores(
            scores, encoded.examples, n_labels, baselines=list(baseline_scores[split])
        )
    return metrics


def start_facts(
    start_from: Baseline | None, result: TrainResult, valid_ndcg: Mapping[str, float], config: TrainConfig
) -> dict[str, Any]:
    """What the model card says about the start: which baseline, chosen how, and whether it was kept."""
    facts: dict[str, Any] = {"chosen": config.start.baseline, "baselines_valid_ndcg@10": dict(valid_ndcg)}
    if start_from is None:
        return facts | {"baseline": None}
    return facts | {
        "baseline": start_from.name,
        "params": start_from.params,
        "spec": start_from.start().to_json(),
        "valid_ndcg@10": result.curve[0]["valid_ndcg@10"],
        "trained_valid_ndcg@10": result.best_valid_ndcg,
        "kept": result.best_epoch == 0,
    }


def build_metadata(
    data: ProcessedData,
    config: TrainConfig,
    schema: FeatureSchema,
    metrics: dict[str, MetricTable],
    *,
    data_dir: Path,
    profile: str,
    n_train: int,
) -> dict[str, Any]:
    """metadata.json without version, created_at and files (write_artifacts adds those)."""
    n_clients = data.clients.height
    return {
        "data": {
            "source": str(data_dir.resolve()),
            "fingerprint": data_fingerprint(data_dir),
            "profile": profile,
        },
        "config": config.to_json(),
        "feature_schema": schema.to_json(),
        "n_labels": data.vocab.n_labels,
        "n_clients": n_clients,
        "trained_on": f"{data_dir.name}: {n_clients} clients, {n_train} training targets ({profile} profile)",
        "funnel": data.funnel,
        "metrics": metrics,
        "library_versions": library_versions(),
    }


def run_training(
    data_dir: Path,
    artifacts_root: Path,
    *,
    config_file: Path | None = None,
    overrides: Iterable[str] = (),
    preset: str | None = None,
    profile: str = "lpoint",
    encoding: str | None = None,
) -> Path:
    """The whole `wdrec train`; returns the new version folder (root/current now points at it)."""
    from training.preprocess import get_profile, load_profile_tables, preprocess

    logging.getLogger("gensim").setLevel(logging.WARNING)  # its INFO lines drown the progress bars
    config, steps, data_dir = load_config(config_file, overrides, preset=preset), Steps(), Path(data_dir)
    torch.set_num_threads(config.torch_threads)
    with steps.step("preprocess"):
        tables = load_profile_tables(data_dir, profile=profile, encoding=encoding)
        data = preprocess(tables, get_profile(profile))
        records = client_records(data)
    with steps.step("products"):
        products = build_product_tables(
            tables,
            data.vocab,
            client_ids=[r.clnt_id for r in records],
            drop_first_hit=get_profile(profile).drop_first_hit,
        )
    del tables  # the raw rows are not needed past this point
    with steps.step("doc2vec"):
        encoder = fit_encoder(records, data.vocab, config)
    schema = FeatureSchema.create(data.vocab, config)
    builder = FeatureBuilder(data.vocab, schema, encoder)
    pool = Pool.of(records, max_neighbours=config.start.neighbour_pool, seed=config.seed)
    with steps.step("features"):
        splits = encode_splits(builder, records, pool, config)
        pool_hist = builder.hist_tensor([builder.recent(h) for h in pool.neighbour_histories()])
    n_labels = data.vocab.n_labels
    with steps.step("baselines"):
        baselines = fit_baselines(pool, splits["valid"].examples, n_labels)
        baseline_scores = {
            split: {b.name: b.score(splits[split].examples) for b in baselines} for split in EVAL_SPLITS
        }
    truths = [set(t) for t in splits["valid"].examples.targets]
    valid_ndcg = {name: mean_ndcg(s, truths) for name, s in baseline_scores["valid"].items()}
    start_from = choose_start(config, baselines, valid_ndcg)
    ease = next((b for b in baselines if isinstance(b, Ease)), None)
    results, explore = train_all(
        schema, data.vocab, config, splits, steps, start_from=start_from, pool_hist=pool_hist,
        label_gap=label_gaps(records, n_labels),
        explore_map=None if ease is None else torch.from_numpy(ease.similarity),
    )  # fmt: skip
    with steps.step("evaluate"):
        metrics = evaluate_all(results, baseline_scores, splits, n_labels)
    main = results[config.method_name]
    card = model_card(metrics, model=config.method_name, baselines=[b.name for b in baselines],
                      start=start_facts(start_from, main, valid_ndcg, config))  # fmt: skip
    card["explore"] = explore[config.method_name] | {"ease": None if ease is None else ease.params}
    summary = training_summary(
        config, results, splits, pool_rows=len(pool.neighbour_rows), n_clients=len(records)
    )
    metadata = build_metadata(
        data,
        config,
        schema,
        metrics,
        data_dir=data_dir,
        profile=profile,
        n_train=len(splits["train"].examples),
    )
    metadata.update(card=card, training=_without_curves(summary), timings=steps.timings)
    with tempfile.TemporaryDirectory() as tmp:
        write_report(Path(tmp), metrics, card=card, summary=summary)
        version = write_artifacts(
            Path(artifacts_root),
            model=main.model,
            encoder=encoder,
            vocab=data.vocab,
            clients=clients_frame(records),
            products=products,
            metadata=metadata,
            fingerprint=metadata["data"]["fingerprint"],
            extra_files={name: Path(tmp) / name for name in ("report.md", "metrics.json", "curves.png")},
        )
    log.info("artifacts %s written; test NDCG@10: %s", version.name, _headline(metrics["test"]))
    return version


def training_summary(
    config: TrainConfig,
    results: Mapping[str, TrainResult],
    splits: Mapping[str, EncodedSplit],
    *,
    pool_rows: int,
    n_clients: int,
) -> dict[str, Any]:
    """Facts for the report and metadata: sizes, per-model epochs and speed, the curves."""
    per_model = {
        name: {
            "best_epoch": r.best_epoch,
            "epochs": sum(1 for row in r.curve if row["epoch"] > 0),
            "seconds": round(r.seconds, 2),
            "examples_per_s": round(r.examples_per_s, 1),
        }
        for name, r in results.items()
    }
    return {
        "clients": n_clients,
        "examples": {split: len(s.examples) for split, s in splits.items()},
        "neighbour_pool": {"clients": pool_rows, "max": config.start.neighbour_pool},
        "loss": config.optim.loss,
        "models": per_model,
        "curves": {name: r.curve for name, r in results.items()},
    }


def _without_curves(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k != "curves"}


def _headline(table: MetricTable) -> str:
    return ", ".join(f"{m} {v['ndcg@10']:.4f}" for m, v in table.items())
