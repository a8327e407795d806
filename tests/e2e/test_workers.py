"""Several worker processes (`wdrec serve --workers 2`): rolling reloads under load fail no request."""

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
from tests.e2e.load import CONNECTIONS, Load, start_load, stop_load, until

pytestmark = pytest.mark.slow  # trains the session's tiny artifacts and starts three processes

WORKERS = 2
STARTED = "Application startup complete"  # logged once per worker process that came up


async def _rolling_reloads(server: Server, root: Path) -> tuple[Load, httpx.Response]:
    async with httpx.AsyncClient(base_url=server.url, timeout=60.0) as admin:
        load, connections = await start_load(admin, server.url, retry_closed=True)

        async def started(count: int) -> bool:
            return server.log.read_text().count(STARTED) >= count

        async def logged(text: str) -> bool:
            return text in server.log.read_text()

        try:
            await asyncio.sleep(1.0)
            await asyncio.to_thread(add_version, root, "v2")
            accepted = await admin.post("/admin/reload", headers={"X-API-Key": KEY})
            await until(lambda: started(2 * WORKERS), "both workers replaced after POST /admin/reload")
            await asyncio.sleep(1.0)
            await asyncio.to_thread(add_version, root, "v-bad", damage="model.pt")
            os.kill(server.process.pid, signal.SIGHUP)
            await until(lambda: logged("aborting the restart"), "the failed replacement abandoned")
            await asyncio.sleep(1.0)
        finally:
            await stop_load(load, connections)
    return load, accepted


def test_two_workers_reload_one_at_a_time_under_load_and_keep_serving_on_a_bad_version(
    tiny_artifacts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = Path(shutil.copytree(tiny_artifacts, tmp_path / "artifacts", symlinks=True))
    first = json.loads((root / "current" / "metadata.json").read_text(encoding="utf-8"))["version"]
    monkeypatch.setenv("WDREC_ADMIN_API_KEY", KEY)  # the server processes inherit it
    with running_server(root, tmp_path / "serve.log", workers=WORKERS) as server:
        load, accepted = asyncio.run(_rolling_reloads(server, root))
        versions = {httpx.get(f"{server.url}/ready").json()["version"] for _ in range(20)}
    assert accepted.status_code == 202, accepted.text
    assert accepted.json() == {"restarting_workers": WORKERS, "serving": first}
    assert load.failures == []  # a request cut off by a retiring worker succeeded when sent again
    assert load.retries <= WORKERS * CONNECTIONS  # at most once per connection per worker retired
    assert set(load.versions) <= {first, "v2"} and load.versions["v2"] > 0
    assert versions == {"v2"}  # every worker serves v2; the damaged version replaced none
    log = (tmp_path / "serve.log").read_text()
    assert "model.pt: SHA-256 mismatch" in log
