"""Shared fixtures: one tiny trained artifact set per test session, from generated data and a fast config."""

from __future__ import annotations

from pathlib import Path

import pytest

# Seconds, not minutes: a few epochs of a narrow model; enough to rank better than chance.
TINY_TRAINING = (
    "optim.max_epochs=2",
    "ablations=false",
    "model.hidden=[16]",
    "doc2vec.epochs=5",
    "doc2vec.vector_size=8",
    "doc2vec.infer_epochs=5",
    "model.label_emb_dim=8",
    "model.copurchase_rank=8",
    "threads=1",
)


@pytest.fixture(scope="session")
def tiny_artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An artifacts root (with `current`) trained on ~300 generated clients."""
    from training.generate import generate
    from training.pipeline import run_training

    root = tmp_path_factory.mktemp("tiny")
    generate(root / "data", clients=300, seed=7, preset="default")
    run_training(root / "data", root / "artifacts", overrides=TINY_TRAINING)
    return root / "artifacts"
