"""Several worker processes (`wdrec serve --workers 2`): rolling reloads under load fail no request, not
even on a client that never retries."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.app.api.routes.test_admin import KEY, add_version
from tests.e2e.conftest import Server, running_server, worker_pids
from tests.e2e.load import Load, log_shows, start_load, stop_load, until

pytestmark = pytest.mark.slow  # trains the session's tiny artifacts and starts three processes

WORKERS = 2
STARTED = "Application startup complete"  # logged once per worker process that came up
OPEN_CONNECTIONS = 64


def _sockets(pid: int) -> int:
    return sum(1 for fd in Path(f"/proc/{pid}/fd").iterdir() if os.readlink(fd).startswith("socket:"))


async def _hold_connections(url: str, count: int, pids: list[int]) -> list[int]:
    """Open `count` keep-alive connections (one request each) and count each worker's sockets meanwhile."""
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(httpx.AsyncClient(base_url=url)) for _ in range(count)]
        for response in await asyncio.gather(*(client.get("/health") for client in clients)):
            assert response.status_code == 200
        return [_sockets(pid) for pid in pids]


def test_two_workers_each_take_a_share_of_new_connections(tiny_artifacts: Path, tmp_path: Path) -> None:
    # uvicorn's shared listening socket let the first worker to wake take a whole burst of connections.
    with running_server(tiny_artifacts, tmp_path / "serve.log", workers=WORKERS) as server:
        workers = worker_pids(server)
        time.sleep(1.0)  # the readiness probe's connection closes on the server's side (it may lag)
        idle = [_sockets(worker) for worker in workers]
        busy = asyncio.run(_hold_connections(server.url, OPEN_CONNECTIONS, workers))
    taken = [b - i for b, i in zip(busy, idle, strict=True)]
    assert len(workers) == WORKERS and sum(taken) >= OPEN_CONNECTIONS  # (+ a probe's socket, if open)
    assert min(taken) >= OPEN_CONNECTIONS // 8, taken  # hashed over 2 sockets: ~32 each


def test_the_supervisor_of_two_workers_holds_no_torch(tiny_artifacts: Path, tmp_path: Path) -> None:
    # It checks the artifacts in a child process: only the workers, which score, load torch and the model.
    with running_server(tiny_artifacts, tmp_path / "serve.log", workers=WORKERS) as server:
        workers = worker_pids(server)
        maps_torch = [
            "libtorch" in Path(f"/proc/{pid}/maps").read_text() for pid in [server.process.pid, *workers]
        ]
        environments = [Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") for pid in workers]
    assert maps_torch == [False] + [True] * WORKERS
    # Each worker starts with glibc's malloc arenas capped (WDREC_MALLOC_ARENAS, default 1).
    assert all(b"MALLOC_ARENA_MAX=1" in environment for environment in environments)


async def _rolling_reloads(server: Server, root: Path) -> tuple[Load, httpx.Response]:
    async with httpx.AsyncClient(base_url=server.url, timeout=60.0) as admin:
        load, connections = await start_load(admin, server.url)

        async def started(count: int) -> bool:
            return server.log.read_text().count(STARTED) >= count

        try:
            await asyncio.sleep(1.0)
            await asyncio.to_thread(add_version, root, "v2")
            accepted = await admin.post("/admin/reload", headers={"X-API-Key": KEY})
            await until(lambda: started(2 * WORKERS), "both workers replaced after POST /admin/reload")
            await asyncio.sleep(1.0)
            await asyncio.to_thread(add_version, root, "v-bad", damage="model.pt")
            os.kill(server.process.pid, signal.SIGHUP)
            await until(log_shows(server, "aborting the restart"), "the failed replacement abandoned")
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
    assert load.failures == []  # no keep-alive connection was closed under a request: nothing to retry
    assert set(load.versions) <= {first, "v2"} and load.versions["v2"] > 0
    assert versions == {"v2"}  # every worker serves v2; the damaged version replaced none
    log = (tmp_path / "serve.log").read_text()
    assert "model.pt: SHA-256 mismatch" in log
