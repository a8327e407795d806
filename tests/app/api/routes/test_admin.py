"""Hot reload (POST /admin/reload) and start-up refusal of damaged artifacts, through the real lifespan."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.main import create_app
from tests.app.api.routes.test_recommend import assert_error
from training.artifacts import CURRENT, METADATA, switch_current
from training.errors import ArtifactError

pytestmark = pytest.mark.slow  # needs the session's trained artifacts

KEY = "s3cret-key"
PAYLOAD = ("model.pt", "doc2vec.model", "vocab.json", "clients.parquet")


def add_version(root: Path, name: str, *, damage: str | None = None, source: str = CURRENT) -> Path:
    """A new version folder copied from root/`source`, renamed `name` in its metadata (which no checksum
    covers), with `damage` (a file name) truncated to half; then `current` switched to it."""
    folder = Path(shutil.copytree((root / source).resolve(), root / name))
    meta = json.loads((folder / METADATA).read_text(encoding="utf-8"))
    (folder / METADATA).write_text(json.dumps({**meta, "version": name}), encoding="utf-8")
    if damage is not None:
        with (folder / damage).open("r+b") as fh:
            fh.truncate(os.path.getsize(folder / damage) // 2)
    switch_current(root, name)
    return folder


@pytest.fixture
def root(tiny_artifacts: Path, tmp_path: Path) -> Path:
    """A private artifacts root (the session's current version, copied), free to add versions to."""
    return Path(shutil.copytree(tiny_artifacts, tmp_path / "artifacts", symlinks=True))


@pytest.fixture
def admin(root: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(artifacts_dir=root, admin_api_key=KEY))) as client:
        yield client


def _version(client: TestClient) -> str:
    return str(client.get("/ready").json()["version"])


def _reload(client: TestClient, key: str | None = KEY) -> object:
    return client.post("/admin/reload", headers={} if key is None else {"X-API-Key": key})


def test_reload_route_is_absent_without_an_api_key(client: TestClient) -> None:
    assert_error(client.post("/admin/reload", headers={"X-API-Key": ""}), 404, "not_found")
    assert "/admin/reload" not in client.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize("key", [None, "", "wrong", KEY + "x", KEY.upper()])
def test_reload_without_the_right_key_returns_401(admin: TestClient, key: str | None) -> None:
    assert_error(_reload(admin, key), 401, "unauthorized")


def test_reload_documents_the_admin_key_as_a_security_scheme(admin: TestClient) -> None:
    openapi = admin.get("/openapi.json").json()
    scheme = openapi["components"]["securitySchemes"]["AdminKey"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "X-API-Key")
    reload = openapi["paths"]["/admin/reload"]["post"]
    assert reload["security"] == [{"AdminKey": []}] and "parameters" not in reload
    assert "WriteKey" not in openapi["components"]["securitySchemes"]  # no write routes without their key


def test_reload_swaps_in_the_newest_version(admin: TestClient, root: Path) -> None:
    before = _version(admin)
    add_version(root, "v2")
    assert _version(admin) == before  # nothing changes until asked
    response = _reload(admin)
    assert response.status_code == 200, response.text  # type: ignore[attr-defined]
    assert response.json() == {"version": "v2", "previous": before, "changed": True}  # type: ignore[attr-defined]
    assert _version(admin) == "v2"
    client_id = admin.get("/clients", params={"limit": 1}).json()["clients"][0]["client_id"]
    assert admin.get(f"/recommend/{client_id}").json()["model"]["version"] == "v2"


def test_reload_of_the_same_version_reports_no_change(admin: TestClient) -> None:
    before = _version(admin)
    assert _reload(admin).json() == {"version": before, "previous": before, "changed": False}  # type: ignore[attr-defined]


@pytest.mark.parametrize("damaged", PAYLOAD)
def test_reload_of_a_damaged_version_keeps_serving_the_old_one_and_says_why(
    admin: TestClient, root: Path, damaged: str, caplog: pytest.LogCaptureFixture
) -> None:
    before = _version(admin)
    add_version(root, "v-bad", damage=damaged)
    with caplog.at_level(logging.ERROR, logger="app.lifecycle"):
        error = assert_error(_reload(admin), 409, "conflict")
    assert (
        f"still serving {before}" in error["message"] and f"{damaged}: SHA-256 mismatch" in error["message"]
    )
    assert f"{damaged}: SHA-256 mismatch" in caplog.text
    assert _version(admin) == before
    client_id = admin.get("/clients", params={"limit": 1}).json()["clients"][0]["client_id"]
    assert admin.get(f"/recommend/{client_id}").status_code == 200


@pytest.mark.parametrize("damaged", (*PAYLOAD, METADATA))
@pytest.mark.parametrize("how", ["truncated", "one byte altered"])
def test_startup_refuses_a_damaged_file_naming_it(root: Path, damaged: str, how: str) -> None:
    path = (root / CURRENT).resolve() / damaged
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if how == "truncated" else data[:-1] + bytes([data[-1] ^ 1]))
    with (
        pytest.raises(ArtifactError, match=damaged.replace(".", r"\.")),
        TestClient(create_app(Settings(artifacts_dir=root))),
    ):
        pass
