"""Hot reload under concurrent load, on a real `wdrec serve`: POST /admin/reload and SIGHUP swap versions
while connections keep sending /recommend and /score, and not one request fails."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.app.api.routes.test_admin import KEY, add_version
from tests.e2e.conftest import Server, running_server

pytestmark = pytest.mark.slow  # trains the session's tiny artifacts and starts uvicorn

CONNECTIONS = 16
STEP_TIMEOUT = 60.0  # seconds for one reload to show; generous, the 2 cores are shared


class Load:
    """Closed-loop connections alternating /recommend and /score until stopped; counts every outcome."""

    def __init__(self, url: str, client_ids: list[int], labels: list[str]) -> None:
        self.url, self.client_ids, self.labels = url, client_ids, labels
        self.versions: Counter[str] = Counter()
        self.failures: list[str] = []
        self.running = True

    async def connection(self, n: int) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=30.0) as client:
            i = n
            while self.running:
                client_id = self.client_ids[i % len(self.client_ids)]
                basket = [self.labels[i % len(self.labels)], self.labels[(i * 7 + 1) % len(self.labels)]]
                for request in (
                    client.build_request("GET", f"/recommend/{client_id}", params={"k": 5}),
                    client.build_request("POST", "/score", json={"basket": basket, "gender": "F", "k": 5}),
                ):
                    await self.send(client, request)
                i += CONNECTIONS

    async def send(self, client: httpx.AsyncClient, request: httpx.Request) -> None:
        try:
            response = await client.send(request)
        except httpx.HTTPError as exc:
            self.failures.append(f"{request.url.path}: {exc!r}")
            return
        if response.status_code != 200:
            self.failures.append(f"{request.url.path}: {response.status_code} {response.text[:200]}")
        else:
            self.versions[response.json()["model"]["version"]] += 1


async def _until(condition_met: object, what: str) -> None:
    deadline = time.monotonic() + STEP_TIMEOUT
    while time.monotonic() < deadline:
        if await condition_met():  # type: ignore[operator]
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"not within {STEP_TIMEOUT} s: {what}")


async def _reload_while_loaded(server: Server, root: Path) -> Load:
    async with httpx.AsyncClient(base_url=server.url, timeout=60.0) as admin:
        clients = (await admin.get("/clients", params={"limit": 50})).json()["clients"]
        groups = (await admin.get("/labels")).json()["groups"]
        load = Load(
            server.url, [c["client_id"] for c in clients], [x["name"] for g in groups for x in g["labels"]]
        )
        workers = [asyncio.create_task(load.connection(n)) for n in range(CONNECTIONS)]

        async def serving(version: str) -> bool:
            return bool((await admin.get("/ready")).json()["version"] == version)

        async def logged(text: str) -> bool:
            return text in server.log.read_text()

        try:
            await asyncio.sleep(1.0)
            await asyncio.to_thread(add_version, root, "v2")
            reloaded = await admin.post("/admin/reload", headers={"X-API-Key": KEY})
            assert reloaded.status_code == 200 and reloaded.json()["version"] == "v2", reloaded.text
            await asyncio.sleep(1.0)
            await asyncio.to_thread(add_version, root, "v-bad", damage="model.pt")
            os.kill(server.process.pid, signal.SIGHUP)
            await _until(lambda: logged("model.pt: SHA-256 mismatch"), "the failed SIGHUP reload logged")
            assert await serving("v2")
            await asyncio.to_thread(add_version, root, "v3", source="v2")
            os.kill(server.process.pid, signal.SIGHUP)
            await _until(lambda: serving("v3"), "v3 served after SIGHUP")
            await asyncio.sleep(1.0)
        finally:
            load.running = False
            await asyncio.gather(*workers)
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
