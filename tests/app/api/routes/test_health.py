from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.main import create_app
from tests.app.api.routes.test_recommend import assert_error


def test_health_returns_ok_without_a_model(tmp_path: object) -> None:
    app = create_app(Settings(artifacts_dir=tmp_path))  # lifespan not entered: nothing loaded
    assert TestClient(app).get("/health").json() == {"status": "ok"}


def test_ready_returns_503_until_artifacts_are_loaded(tmp_path: object) -> None:
    test_client = TestClient(create_app(Settings(artifacts_dir=tmp_path)))
    assert_error(test_client.get("/ready"), 503, "not_ready")
    assert_error(test_client.get("/recommend/1"), 503, "not_ready")


@pytest.mark.slow
def test_ready_returns_the_loaded_version(client: TestClient, settings: Settings) -> None:
    body = client.get("/ready").json()
    assert (
        body["status"] == "ready"
        and body["version"] == settings.artifacts_dir.joinpath("current").resolve().name
    )
