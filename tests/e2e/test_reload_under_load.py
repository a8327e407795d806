"""Hot reload under concurrent load, on a real `wdrec serve`: POST /admin/reload and SIGHUP swap versions
while connections keep sending /recommend and /score, and not one request fails."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
from pathlib import Path

import httpx
import pytest

from tests.app.api.routes.test_admin import KEY, add_version
from tests.e2e.conftest import Server, running_server
from tests.e2e.load import Load, log_shows, start_load, stop_load, until

pytestmark = pytest.mark.slow  # trains the session's tiny artifacts and starts uvicorn


async def _reload_while_loaded(server: Server, root: Path) -> Load:
    async with httpx.AsyncClient(base_url=server.url, timeout=60.0) as admin:
        load, connections = await start_load(admin, server.url)

        async def serving(version: str) -> bool:
            return bool((await admin.get("/ready")).json()["version"] == version)

        try:
            await asyncio.sleep(1.0)
            await asyncio.to_thread(add_version, root, "v2")
            reloaded = await admin.post("/admin/reload", headers={"X-API-Key": KEY})
            assert reloaded.status_code == 200 and reloaded.json()["version"] == "v2", reloaded.text
            await asyncio.sleep(1.0)
            await asyncio.to_thread(add_version, root, "v-bad", damage="model.pt")
            os.kill(server.process.pid, signal.SIGHUP)
            await until(log_shows(server, "model.pt: SHA-256 mismatch"), "the failed SIGHUP reload logged")
            assert await serving("v2")
            await asyncio.to_thread(add_version, root, "v3", source="v2")
            os.kill(server.process.pid, signal.SIGHUP)
            await until(lambda: serving("v3"), "v3 served after SIGHUP")
            await asyncio.sleep(1.0)
        finally:
            await stop_load(load, connections)
    return load


def test_reloads_under_concurrent_load_fail_no_request(
    tiny_artifacts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = Path(shutil.copytree(tiny_artifacts, tmp_path / "artifacts", symlinks=True))
    first = json.loads((root / "current" / "metadata.json").read_text(encoding="utf-8"))["version"]
    monkeypatch.setenv("WDREC_ADMIN_API_KEY", KEY)  # the server process inherits it
    with running_server(root, tmp_path / "serve.log") as server:
        load = asyncio.run(_reload_while_loaded(server, root))
    assert load.failures == []
    assert set(load.versions) <= {first, "v2", "v3"} and load.versions["v3"] > 0
    assert sum(load.versions.values()) >= 100  # the reloads really happened under load
    log = (tmp_path / "serve.log").read_text()
    assert "reload failed, still serving v2" in log and "Traceback" not in log
