"""Rankings computed off the request path and stored in the database, beside the sessions.

Computing a client's ranking per request (its recorded sessions read, features, a forward pass) costs
three times a cached answer's CPU. Instead, each client's scores for every label are computed when
something changes them: a session or demographics recorded for the client, another model version served,
a new day (the calendar features count days). They are stored stamped with the model version, the date
and the client's revision; any worker or replica answers GET /recommend from them with one read while all
three are current, and computes as before when they are not. So read-your-writes holds: a read arriving
before its client's refresh sees a revision the stored ranking lacks and computes.

Each process refreshes the clients whose rankings its own writes made stale; after a reload or at
midnight (UTC) every process refreshes the clients whose ranking is not current yet, skipping those
another process stored meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import logging
import os
from collections.abc import Callable, Sequence

import anyio.to_thread
import numpy as np

from app.errors import ServiceError
from app.explain import utc_today
from app.filters import NO_FILTERS
from app.live import StoredRanking
from app.metrics import RANKINGS_PENDING, RANKINGS_STORED
from app.recommender import Query, Recommender, labels_in
from app.served import ServedVersion
from app.store import SessionStore
from training.topk import stable_topk

logger = logging.getLogger(__name__)

CHUNK = 16  # clients scored in one forward pass and stored in one transaction
# Before a pass of written clients: those written meanwhile join it, and a flood of writes is refreshed at
# most CHUNK clients per SETTLE_SECONDS and pass per process (each client once however often it is written).
SETTLE_SECONDS = 0.05
RETRY_SECONDS = 1.0  # after a failed pass (its clients are computed per request meanwhile)


def refresh(recommender: Recommender, store: SessionStore, client_ids: Sequence[int], today: dt.date) -> int:
    """Compute and store the rankings of `client_ids` as of `today` that are not current; how many were
    stored (clients neither in the training data nor recorded have none)."""
    version = recommender.version
    states = store.states(client_ids, version=version, as_of=today)
    stale = [client_id for client_id in client_ids if states[client_id].ranking is None]
    lives = store.clients(stale, newest=recommender.max_sessions, until=today)
    queries: list[Query] = []
    stamps: list[tuple[int, int]] = []
    for client_id in stale:
        live = lives.get(client_id)
        try:
            queries.append(recommender.client_query(client_id, NO_FILTERS, live, today))
        except ServiceError:  # unknown to this version: its reads answer 404
            continue
        stamps.append((client_id, live.revision if live is not None else 0))
    if not queries:
        return 0
    scores = recommender.scores(queries)
    orders = stable_topk(scores, scores.shape[1]).numpy()  # the whole ranking, in the routes' order
    scores_np = scores.numpy()
    computed = [
        (
            client_id,
            revision,
            StoredRanking(scores_np[row], orders[row], np.array(sorted(labels_in(query.history)))),
        )
        for row, ((client_id, revision), query) in enumerate(zip(stamps, queries, strict=True))
    ]
    store.put_rankings(version, today, computed)
    return len(computed)


class RankingRefresher:
    """Keeps the stored rankings of the served version current, from a task on the event loop: call
    `changed` after a write is acknowledged, `wake` after a reload."""

    def __init__(self, store: SessionStore, served: Callable[[], ServedVersion]) -> None:
        self._store = store
        self._served = served
        self._pending: dict[int, None] = {}  # clients whose writes made them stale, oldest mark first
        self._sweep: list[int] = []  # every client, after a reload or at midnight: refreshed after those
        self._swept = 0  # how far the sweep went
        self._covered: tuple[str, dt.date] | None = None  # the (version, date) of the sweep
        self._in_flight = 0  # clients of the pass running
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()  # set while nothing is pending nor running

    def changed(self, client_id: int) -> None:
        """The client's ranking is stale: a write for it was acknowledged."""
        self._pending[client_id] = None
        self._counted()
        self._wake.set()

    def wake(self) -> None:
        """Look again at what is served (a reload swapped the version)."""
        self._wake.set()

    async def idle(self) -> None:
        """Wait until every stale ranking marked so far is refreshed."""
        await self._idle.wait()

    def _counted(self) -> None:
        waiting = len(self._pending) + len(self._sweep) - self._swept + self._in_flight
        RANKINGS_PENDING.set(waiting)
        if waiting:
            self._idle.clear()
        else:
            self._idle.set()

    async def run(self) -> None:
        """Refresh until cancelled."""
        while True:
            served, today = self._served(), utc_today()
            if self._covered != (served.version, today):
                await self._start_sweep(served.recommender)
                self._covered = (served.version, today)
            if not self._pending and self._swept == len(self._sweep):
                await self._sleep(_seconds_to_midnight())
                continue
            if self._pending:  # writes arriving meanwhile share the pass, which also paces it; sweeps go on
                await asyncio.sleep(SETTLE_SECONDS)
            chunk = self._next_chunk()
            self._in_flight = len(chunk)
            try:
                stored = await anyio.to_thread.run_sync(
                    refresh, served.recommender, self._store, chunk, today
                )
            except Exception:  # the database is down, say: those clients are computed per request
                logger.exception("refreshing %d stored rankings failed", len(chunk))
                await asyncio.sleep(RETRY_SECONDS)
            else:
                RANKINGS_STORED.inc(stored)
            finally:
                self._in_flight = 0
                self._counted()

    def _next_chunk(self) -> list[int]:
        """Up to CHUNK clients to refresh, written ones first, taken off their queue before the pass (a write
        acknowledged during the pass marks its client again)."""
        chunk = list(itertools.islice(self._pending, CHUNK))
        for client_id in chunk:
            del self._pending[client_id]
        if len(chunk) < CHUNK:
            end = min(self._swept + CHUNK - len(chunk), len(self._sweep))
            chunk += self._sweep[self._swept : end]
            self._swept = end
        return chunk

    async def _start_sweep(self, recommender: Recommender) -> None:
        """Queue every client of the training data, then every recorded one. Each worker process starts at
        another place (by its PID), so that their passes overlap less: a pass skips what is current."""
        recorded: list[int] = []
        with contextlib.suppress(ServiceError):  # the database is down: the recorded ones wait for a write
            recorded = await anyio.to_thread.run_sync(self._store.recorded_client_ids)
        everyone = [*recommender.client_ids, *recorded]
        start = (os.getpid() * CHUNK) % max(len(everyone), 1)
        self._sweep, self._swept = everyone[start:] + everyone[:start], 0
        self._counted()

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)


def _seconds_to_midnight() -> float:
    """Seconds until the next UTC day begins, and one more."""
    now = dt.datetime.now(dt.UTC)
    midnight = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), dt.UTC)
    return (midnight - now).total_seconds() + 1.0
