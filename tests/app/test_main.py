from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from app.core.config import Settings
from app.launch import serve
from app.main import create_app
from app.recommender import Recommender
from tests.app.api.routes.test_recommend import assert_error
from training import cli
from training.artifacts import ArtifactSet
from training.errors import ArtifactError

pytestmark = pytest.mark.slow  # needs the session's trained artifacts


@pytest.fixture
def version_copy(tiny_artifacts: Path, tmp_path: Path) -> Path:
    """A private copy of the current version folder, free to corrupt."""
    return Path(shutil.copytree((tiny_artifacts / "current").resolve(), tmp_path / "version"))


@pytest.fixture(scope="module")
def preloaded(artifacts: ArtifactSet) -> Recommender:
    return Recommender(artifacts)


def test_rankings_then_session_writes_are_matched_first(tmp_path: Path) -> None:
    """Requests are matched against the routes in order, each route passed over at a cost: the busiest
    come first (the OpenAPI document lists the paths in that order)."""
    app = create_app(Settings(artifacts_dir=tmp_path, write_api_key=SecretStr("k" * 32)))
    paths = app.openapi()["paths"]
    first = ["/recommend/{client_id}", "/score", "/clients/{client_id}", "/clients/{client_id}/sessions"]
    assert list(paths)[:4] == first and list(paths["/clients/{client_id}"]) == ["put", "get"]


def test_startup_refuses_a_corrupt_model_naming_the_file(version_copy: Path) -> None:
    with (version_copy / "model.pt").open("r+b") as fh:
        fh.truncate(100)
    with (
        pytest.raises(ArtifactError, match=r"model\.pt: SHA-256 mismatch"),
        TestClient(create_app(Settings(artifacts_dir=version_copy))),
    ):
        pass


def test_startup_refuses_a_missing_file_naming_it(version_copy: Path) -> None:
    (version_copy / "clients.parquet").unlink()
    with (
        pytest.raises(ArtifactError, match=r"clients\.parquet: missing"),
        TestClient(create_app(Settings(artifacts_dir=version_copy))),
    ):
        pass


def test_serve_refuses_bad_artifacts_before_binding(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="train first"):
        serve(artifacts_dir=tmp_path, port=1)


@pytest.mark.parametrize("workers", ["1", "2"])  # 2: checked in a child process, raised in the supervisor
def test_wdrec_serve_tampered_artifacts_exits_2_with_one_line_naming_the_file(
    version_copy: Path, capsys: pytest.CaptureFixture[str], workers: str
) -> None:
    (version_copy / "doc2vec.model").write_bytes(b"tampered")
    assert cli.main(["serve", "--artifacts", str(version_copy), "--port", "1", "--workers", workers]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wdrec serve: error: ")
    assert "doc2vec.model: SHA-256 mismatch" in lines[0]


def test_unknown_path_returns_404_in_the_error_shape(client: TestClient) -> None:
    assert_error(client.get("/no/such/route"), 404, "not_found")


def test_wrong_method_returns_405_in_the_error_shape(client: TestClient) -> None:
    assert_error(client.delete("/labels"), 405, "method_not_allowed")


def test_unexpected_error_returns_500_without_a_stack_trace(
    settings: Settings, preloaded: Recommender
) -> None:
    app = create_app(settings, recommender=preloaded)

    def broken() -> None:
        raise RuntimeError("secret internals")

    app.add_api_route("/broken", broken)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/broken")
    error = assert_error(response, 500, "internal_error")
    assert "secret" not in response.text and "Traceback" not in response.text and error["details"] is None


def test_cors_is_off_by_default(client: TestClient) -> None:
    response = client.get("/health", headers={"Origin": "https://elsewhere.example"})
    assert "access-control-allow-origin" not in response.headers


def test_cors_allows_the_configured_origins(settings: Settings, preloaded: Recommender) -> None:
    app = create_app(
        settings.model_copy(update={"cors_origins": ["https://shop.example"]}), recommender=preloaded
    )
    with TestClient(app) as client:
        response = client.get("/health", headers={"Origin": "https://shop.example"})
    assert response.headers["access-control-allow-origin"] == "https://shop.example"


def test_index_page_links_the_docs_and_its_assets(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'href="/docs"' in page.text
    for asset in ("/web/app.js", "/web/style.css"):
        assert asset in page.text and client.get(asset).status_code == 200
