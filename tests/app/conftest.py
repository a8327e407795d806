"""The app under test: the real lifespan over the session's tiny artifacts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.main import create_app
from training.artifacts import ArtifactSet, load_artifacts


@pytest.fixture(scope="session")
def settings(tiny_artifacts: Path) -> Settings:
    return Settings(artifacts_dir=tiny_artifacts)


@pytest.fixture(scope="session")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def artifacts(tiny_artifacts: Path) -> ArtifactSet:
    """The same artifact set, loaded by the training side's own code."""
    return load_artifacts(tiny_artifacts)


@pytest.fixture(scope="session")
def known_client(artifacts: ArtifactSet) -> int:
    return int(artifacts.clients["CLNT_ID"][0])
