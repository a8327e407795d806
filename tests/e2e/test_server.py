from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Server, running_server
from training.artifacts import load_artifacts

pytestmark = pytest.mark.slow  # trains the session's tiny artifacts and starts uvicorn


def test_served_recommend_known_client_returns_k_labels(server: Server, tiny_artifacts: Path) -> None:
    client_id = httpx.get(f"{server.url}/clients", params={"limit": 1}).json()["clients"][0]["client_id"]
    response = httpx.get(f"{server.url}/recommend/{client_id}", params={"k": 5})
    assert response.status_code == 200
    body = response.json()
    assert body["client_id"] == client_id and len(body["recommendations"]) == 5
    assert body["model"]["version"] == load_artifacts(tiny_artifacts).metadata["version"]


def test_served_score_and_errors_use_the_json_shape(server: Server) -> None:
    labels = httpx.get(f"{server.url}/labels").json()["groups"][0]["labels"]
    scored = httpx.post(f"{server.url}/score", json={"basket": [labels[0]["name"]], "gender": "F", "k": 3})
    assert scored.status_code == 200 and len(scored.json()["recommendations"]) == 3
    missing = httpx.get(f"{server.url}/recommend/0")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_client"
    nowhere = httpx.get(f"{server.url}/nowhere")
    assert nowhere.status_code == 404 and nowhere.json()["error"]["code"] == "not_found"


def test_served_docs_and_page_are_reachable(server: Server) -> None:
    assert httpx.get(f"{server.url}/docs").status_code == 200
    assert "wdrec" in httpx.get(f"{server.url}/").text


def test_the_access_log_has_a_line_per_request_unless_turned_off(
    server: Server, tiny_artifacts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    line = '"GET /health HTTP/1.1" 200'
    httpx.get(f"{server.url}/health").raise_for_status()
    assert line in server.log.read_text()
    monkeypatch.setenv("WDREC_ACCESS_LOG", "false")  # the server process inherits it
    with running_server(tiny_artifacts, tmp_path / "serve.log") as quiet:
        httpx.get(f"{quiet.url}/health").raise_for_status()
        assert httpx.get(f"{quiet.url}/nowhere").status_code == 404
    logged = quiet.log.read_text()
    assert "Application startup complete" in logged and "HTTP/1.1" not in logged
