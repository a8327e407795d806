"""Shared fixtures: one tiny trained artifact set per test session, from generated data and a fast config."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.postgres import PostgresServer, remove, start_server

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


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server for the session (tests/postgres.py); skipped if not installed."""
    server = start_server()
    if server is None:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql; .ci/run does)")
    try:
        yield server
    finally:
        remove(server)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each kind: a SQLite file, and a database on the PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'wdrec.sqlite3'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.new_database().render_as_string(hide_password=False)
