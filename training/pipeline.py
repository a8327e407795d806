"""`wdrec train`: preprocess -> Doc2Vec -> examples -> Wide & Deep (+ ablations) -> evaluate -> export.

Each step's output is a value handed to the next; `Steps` records each step's wall time and peak RSS
(metadata["timings"], read by bench/train.py).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import logging
import platform
import resource
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import torch

from training.artifacts import write_artifacts
from training.config import TrainConfig, load_config
from training.dataset import ProcessedData, Vocabulary
from training.doc2vec import Doc2VecEncoder, train_doc2vec
from training.evaluate import MetricTable, baseline_rankers, evaluate_methods, model_rankings, write_report
from training.features import (
    ClientRecord,
    FeatureBuilder,
    FeatureSchema,
    ModelInputs,
    history_before_valid,
    split_examples,
)
from training.metrics import KS
from training.products import build_product_tables
from training.train import TrainResult, train_model

log = logging.getLogger(__name__)

LIBRARIES = ("torch", "gensim", "numpy", "polars", "pyarrow", "wdrec")
MODE_NAMES = {"wide_deep": "W&D", "wide": "wide-only", "deep": "deep-only"}


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
    return [ClientRecord(c, g, a, sessions) for c, g, a, sessions, _ in data.client_histories()]


def clients_frame(records: Sequence[ClientRecord]) -> pl.DataFrame:
    """clients.parquet: demographics and every kept session (oldest first) per client."""
    return pl.DataFrame(
        {
            "CLNT_ID": [r.clnt_id for r in records],
            "gender": [r.gender for r in records],
            "age": [r.age for r in records],
            "sessions": [r.sessions for r in records],
        }
    )


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    return versions


def encode_splits(
    builder: FeatureBuilder, records: Sequence[ClientRecord]
) -> dict[str, tuple[ModelInputs, Any]]:
    """ModelInputs (hist stored as int32 to halve memory, `exclude` set) and examples of each split."""
    encoded = {}
    for split in ("train", "valid", "test"):
        ex = split_examples(records, split)
        inputs = builder.build_batch(ex.histories, ex.genders, ex.ages)
        encoded[split] = (with_exclusion(inputs._replace(hist=inputs.hist.int()), ex.clnt_ids, records), ex)
    return encoded


def neighbour_pool(builder: FeatureBuilder, records: Sequence[ClientRecord]) -> torch.Tensor:
    """`hist` [M, S, L] of every client's context and train sessions (never a validation or test one),
    in `records` order: the model turns it into its neighbour pool (WideAndDeep.set_pool)."""
    return builder.hist_tensor([builder.recent(history_before_valid(r)) for r in records])


def with_exclusion(
    inputs: ModelInputs, clnt_ids: Sequence[int], records: Sequence[ClientRecord]
) -> ModelInputs:
    """`inputs` whose `exclude` is each example's own pool row, so no client is its own neighbour (its
    pool vector holds its training targets; TIFU-KNN excludes the client the same way)."""
    row = {r.clnt_id: i for i, r in enumerate(records)}
    return inputs._replace(exclude=torch.tensor([row.get(c, -1) for c in clnt_ids], dtype=torch.int64))


def train_all(
    schema: FeatureSchema,
    data: ProcessedData,
    config: TrainConfig,
    encoded: dict[str, tuple[ModelInputs, Any]],
    steps: Steps,
    *,
    pool: torch.Tensor | None = None,
) -> dict[str, TrainResult]:
    """The configured model, then (if config.ablations) the two ablations of the other modes; `pool` is
    `neighbour_pool` (needed if config.neighbours > 0)."""
    modes = [config.mode] + ([m for m in MODE_NAMES if m != config.mode] if config.ablations else [])
    results = {}
    for mode in modes:
        with steps.step(f"train_{mode}"):
            results[mode] = train_model(
                schema,
                data.vocab,
                config,
                train=(encoded["train"][0], encoded["train"][1].targets),
                valid=(encoded["valid"][0], encoded["valid"][1].targets),
                mode=mode,
                pool=pool,
            )
    return results


def evaluate_all(
    records: Sequence[ClientRecord],
    results: dict[str, TrainResult],
    encoded: dict[str, tuple[ModelInputs, Any]],
    n_labels: int,
) -> dict[str, MetricTable]:
    """valid and test tables: every trained model, then the baselines."""
    metrics: dict[str, MetricTable] = {}
    for split in ("valid", "test"):
        inputs, examples = encoded[split]
        rankers: dict[str, Callable[[], list[list[int]]]] = {
            MODE_NAMES[mode]: functools.partial(model_rankings, r.model, inputs, max(KS))
            for mode, r in results.items()
        }
        rankers.update(baseline_rankers(records, examples, n_labels))
        metrics[split] = evaluate_methods(rankers, examples, n_labels)
    return metrics


def fit_encoder(records: Sequence[ClientRecord], vocab: Vocabulary, config: TrainConfig) -> Doc2VecEncoder:
    """Doc2Vec on context and train-target sessions only (never a validation or test session)."""
    corpus = [s for r in records for s in history_before_valid(r)]
    model = train_doc2vec(corpus, vocab.labels, config)
    return Doc2VecEncoder(model, vocab.labels, epochs=config.d2v_infer_epochs, seed=config.seed)


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
    profile: str = "lpoint",
    encoding: str | None = None,
) -> Path:
    """The whole `wdrec train`; returns the new version folder (root/current now points at it)."""
    from training.preprocess import get_profile, load_profile_tables, preprocess

    logging.getLogger("gensim").setLevel(logging.WARNING)  # its INFO lines drown the progress bars
    config, steps, data_dir = load_config(config_file, overrides), Steps(), Path(data_dir)
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
    with steps.step("features"):
        builder = FeatureBuilder(data.vocab, schema, encoder)
        encoded = encode_splits(builder, records)
    pool = neighbour_pool(builder, records) if config.neighbours > 0 else None
    results = train_all(schema, data, config, encoded, steps, pool=pool)
    with steps.step("evaluate"):
        metrics = evaluate_all(records, results, encoded, data.vocab.n_labels)
    summary = training_summary(config, results, encoded, n_clients=len(records))
    metadata = build_metadata(
        data, config, schema, metrics, data_dir=data_dir, profile=profile, n_train=len(encoded["train"][1])
    )
    metadata.update(training=_without_curves(summary), timings=steps.timings)
    with tempfile.TemporaryDirectory() as tmp:
        write_report(Path(tmp), metrics, summary=summary)
        version = write_artifacts(
            Path(artifacts_root),
            model=results[config.mode].model,
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
    results: dict[str, TrainResult],
    encoded: dict[str, tuple[ModelInputs, Any]],
    *,
    n_clients: int,
) -> dict[str, Any]:
    """Facts for the report and metadata: sizes, per-model epochs and speed, the curves."""
    per_model = {
        MODE_NAMES[m]: {
            "best_epoch": r.best_epoch,
            "epochs": len(r.curve),
            "seconds": round(r.seconds, 2),
            "examples_per_s": round(r.examples_per_s, 1),
        }
        for m, r in results.items()
    }
    pool = results[config.mode].model.pool
    return {
        "clients": n_clients,
        "examples": {split: len(ex) for split, (_, ex) in encoded.items()},
        "neighbour_pool": {"clients": pool.shape[0], "labels": pool.shape[1], "bytes": pool.numel() * 4},
        "loss": config.loss,
        "models": per_model,
        "curves": {MODE_NAMES[m]: r.curve for m, r in results.items()},
    }


def _without_curves(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k != "curves"}


def _headline(table: MetricTable) -> str:
    return ", ".join(f"{m} {v['ndcg@10']:.4f}" for m, v in table.items())
