"""Nothing acknowledged is lost: a storm of writes, the server killed with SIGKILL mid-way, then restarted.

Every session answered 201 (or 200: already stored) must be there afterwards with the body sent, and no
session may be half-written: each client's revision equals its number of sessions (one transaction wrote
both). With PostgreSQL, two replicas share the database and killing one loses nothing the other can't
read. SIGKILL goes to the server's whole process group (supervisor and workers): no shutdown code runs.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import make_url

from app.db.engine import open_database
from app.store import SessionStore
from tests.e2e.conftest import Server, launch, wait_ready
from tests.postgres import PostgresServer

pytestmark = pytest.mark.slow  # trains the session's tiny artifacts and starts uvicorn

KEY = "storm-key"
WRITERS = 16
CLIENTS = range(800_000_000, 800_000_020)  # clients new to the training data, so all state is recorded
KILL_AFTER = 150  # acknowledged writes before the kill
DAY = dt.date(2026, 11, 30)


@dataclass
class Storm:
    labels: list[str]
    acked: dict[tuple[int, str], list[str]] = field(default_factory=dict)
    sent: dict[tuple[int, str], list[str]] = field(default_factory=dict)
    errors: int = 0
    running: bool = True

    async def writer(self, url: str, n: int) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=10.0) as client:
            i = 0
            while self.running:
                client_id = CLIENTS[(n + i) % len(CLIENTS)]
                session_id = f"w{n}-{i}"
                labels = [self.labels[(n * 31 + i * 7 + j) % len(self.labels)] for j in range(1 + i % 3)]
                body = {"session_id": session_id, "date": DAY.isoformat(), "labels": labels}
                self.sent[(client_id, session_id)] = labels
                i += 1
                try:
                    response = await client.post(
                        f"/clients/{client_id}/sessions", json=body, headers={"X-API-Key": KEY}
                    )
                except httpx.HTTPError:
                    self.errors += 1
                    await asyncio.sleep(0.05)
                    continue
                if response.status_code in (200, 201):
                    self.acked[(client_id, session_id)] = labels


@contextmanager
def server_env(database_url: str, tmp_path: Path) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("WDREC_WRITE_API_KEY", KEY)
        env.setenv("WDREC_DATABASE_URL", database_url)
        env.setenv("WDREC_STATE_DIR", str(tmp_path / "state"))
        yield


def kill(server: Server) -> None:
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=30)


async def storm_until_killed(storm: Storm, urls: list[str], victim: Server) -> None:
    tasks = [asyncio.create_task(storm.writer(urls[n % len(urls)], n)) for n in range(WRITERS)]
    deadline = time.monotonic() + 120
    while len(storm.acked) < KILL_AFTER and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    kill(victim)
    await asyncio.sleep(1.0)  # writes in flight meet the dead server (or the surviving replica)
    storm.running = False
    await asyncio.gather(*tasks)


def assert_nothing_lost(database_url: str, storm: Storm) -> None:
    store = SessionStore(open_database(make_url(database_url)))
    try:
        stored = {client.client_id: client for client in store.all_clients()}
    finally:
        store.close()
    found = {(cid, s.session_id): list(s.labels) for cid, client in stored.items() for s in client.sessions}
    missing = [key for key in storm.acked if key not in found]
    assert not missing, f"{len(missing)} acknowledged sessions lost, e.g. {missing[:3]}"
    assert all(found[key] == labels for key, labels in storm.acked.items())
    assert all(storm.sent[key] == labels for key, labels in found.items())  # nothing stored but what was sent
    assert all(client.revision == len(client.sessions) for client in stored.values())  # none half-written


def labels_of(url: str) -> list[str]:
    groups = httpx.get(f"{url}/labels").json()["groups"]
    return [label["name"] for group in groups for label in group["labels"]][:40]


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_sigkill_mid_storm_loses_no_acknowledged_session(
    kind: str, tiny_artifacts: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if kind == "sqlite":
        database_url = f"sqlite:///{tmp_path / 'state' / 'wdrec.sqlite3'}"
    else:
        database_url = request.getfixturevalue("postgres").new_database().render_as_string(False)
    with server_env(database_url, tmp_path):
        server = launch(tiny_artifacts, tmp_path / "serve.log", workers=2)
        try:
            wait_ready(server)
            storm = Storm(labels_of(server.url))
            asyncio.run(storm_until_killed(storm, [server.url], server))
        finally:
            if server.process.poll() is None:
                kill(server)
        assert len(storm.acked) >= KILL_AFTER and storm.errors > 0  # the kill came mid-storm
        assert_nothing_lost(database_url, storm)
        restarted = launch(tiny_artifacts, tmp_path / "restart.log")
        try:
            wait_ready(restarted)
            client_id, session_id = next(iter(storm.acked))
            detail = httpx.get(f"{restarted.url}/clients/{client_id}").json()
            assert session_id in {s["session_id"] for s in detail["recorded_sessions"]}
            assert httpx.get(f"{restarted.url}/recommend/{client_id}").status_code == 200
        finally:
            kill(restarted)


def test_killing_one_postgresql_replica_loses_nothing_the_other_serves(
    postgres: PostgresServer, tiny_artifacts: Path, tmp_path: Path
) -> None:
    database_url = postgres.new_database().render_as_string(False)
    with server_env(database_url, tmp_path):
        replicas = [launch(tiny_artifacts, tmp_path / f"replica{n}.log") for n in range(2)]
        try:
            for replica in replicas:
                wait_ready(replica)
            storm = Storm(labels_of(replicas[0].url))
            asyncio.run(storm_until_killed(storm, [r.url for r in replicas], replicas[0]))
            assert_nothing_lost(database_url, storm)
            survivor = replicas[1].url
            for client_id, session_id in list(storm.acked)[-20:]:
                detail = httpx.get(f"{survivor}/clients/{client_id}").json()
                assert session_id in {s["session_id"] for s in detail["recorded_sessions"]}
        finally:
            for replica in replicas:
                if replica.process.poll() is None:
                    kill(replica)
