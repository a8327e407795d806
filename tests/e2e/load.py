"""Closed-loop HTTP load for the end-to-end reload tests: every request's outcome is counted."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable

import httpx

from tests.e2e.conftest import Server

CONNECTIONS = 16
STEP_TIMEOUT = 120.0  # seconds for one reload to show; generous, four engineers share the 2 cores


class Load:
    """Closed-loop keep-alive connections alternating /recommend and /score until stopped; counts every
    outcome. A request is never sent again: a connection closed under it is a failure."""

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


def log_shows(server: Server, text: str) -> Callable[[], Awaitable[bool]]:
    """For `until`: whether the server's log holds `text` yet."""

    async def shows() -> bool:
        return text in server.log.read_text()

    return shows


async def until(condition_met: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + STEP_TIMEOUT
    while time.monotonic() < deadline:
        if await condition_met():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"not within {STEP_TIMEOUT} s: {what}")


async def start_load(admin: httpx.AsyncClient, url: str) -> tuple[Load, list[asyncio.Task[None]]]:
    """A Load over the server's first 50 clients and all its labels, running on CONNECTIONS connections."""
    clients = (await admin.get("/clients", params={"limit": 50})).json()["clients"]
    groups = (await admin.get("/labels")).json()["groups"]
    client_ids, labels = [c["client_id"] for c in clients], [x["name"] for g in groups for x in g["labels"]]
    load = Load(url, client_ids, labels)
    return load, [asyncio.create_task(load.connection(n)) for n in range(CONNECTIONS)]


async def stop_load(load: Load, connections: list[asyncio.Task[None]]) -> None:
    load.running = False
    await asyncio.gather(*connections)
