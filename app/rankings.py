"""Rankings computed off the request path and stored in the database, beside the sessions.

Computing a client's ranking per request (its recorded sessions read, features, a forward pass) costs
three times a cached answer's CPU. Instead, each client's scores for every label are computed when
something changes them: a session or demographics recorded for the client, another model version served,
a new day (the calendar features count days). They are stored stamped with the model version, the date
and the client's revision; any worker or replica answers GET /recommend from them with one read while all
three are current.

Each process refreshes the clients whose rankings its own writes made stale; after a reload or at
midnight (UTC) every process refreshes the clients whose ranking is not current yet, skipping those
another process stored meanwhile. A read that finds its client's ranking stale (its refresh has not run
yet, or another replica took the write) waits for an express pass, started at once beside the others: the
ranking is computed once, whether a read or a write asked first, and the pass reads the client's state
after the read arrived, so read-your-writes holds. A pass computes on the event loop and reads and writes
the database where the store says: SQLite on the loop too, PostgreSQL on worker threads. Passes do not wait
for their rankings' commit (one task stores them, in order): a read that finds its client at the revision of
a ranking still being committed takes that ranking instead of waiting for a pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import anyio.to_thread
import numpy as np

from app.errors import ServiceError
from app.explain import utc_today
from app.filters import NO_FILTERS
from app.live import ClientState, LiveClient, StoredRanking
from app.metrics import RANKINGS_PENDING, RANKINGS_STORED
from app.recommender import Query, Recommender, labels_in
from app.served import ServedVersion
from app.store import SessionStore
from training.topk import stable_topk

logger = logging.getLogger(__name__)

CHUNK = 8  # clients scored in one forward pass (on the event loop: a few ms) and stored in one transaction
# Before a pass of written clients, so that those written meanwhile join it: SETTLE_SECONDS while fewer than
# CHUNK wait, FLOOD_SETTLE_SECONDS once a pass's worth does. So a flood of writes is refreshed at most CHUNK
# clients per FLOOD_SETTLE_SECONDS and process (each client once however often it is written) and the writes
# keep the CPU, while a trickle is refreshed soon: a longer wait keeps more reads waiting for their client's
# refresh. In bench.serve's live runs, the mix's reads' p99 and the writes' alone: 10 ms / 25 ms with passes
# of 8, 22-26 ms and 24-28 ms; 10 ms / 50 ms with passes of 8, 26-48 ms and 25-35 ms (with passes of 16,
# 23-25 ms and 26-29 ms); 10 ms throughout with passes of 16, 24-39 ms and 34-42 ms; 50 ms throughout, 37-44
# ms in the mix.
SETTLE_SECONDS = 0.01
FLOOD_SETTLE_SECONDS = 0.025
RETRY_SECONDS = 1.0  # after a failed pass (its clients are computed per request meanwhile)


class Stale(NamedTuple):
    """What a pass reads of its clients: the current states, and the recorded state of the others."""

    current: dict[int, ClientState]  # clients whose stored ranking is current
    stale: list[int]  # the others, in the order asked for
    lives: dict[int, LiveClient]  # their recorded sessions and demographics (none if never recorded)


Computed = tuple[int, int, StoredRanking]  # (client ID, the revision it was computed at, its ranking)


def read_stale(
    recommender: Recommender, store: SessionStore, client_ids: Sequence[int], today: dt.date
) -> Stale:
    """The states of `client_ids` with their rankings of `recommender`'s version as of `today` (one database
    read), and the recorded state of those whose ranking is not current (another)."""
    states = store.states(client_ids, version=recommender.version, as_of=today)
    current = {client_id: state for client_id, state in states.items() if state.ranking is not None}
    stale = [client_id for client_id in client_ids if client_id not in current]
    return Stale(current, stale, store.clients(stale, newest=recommender.max_sessions, until=today))


def rank(recommender: Recommender, read: Stale, today: dt.date) -> list[Computed]:
    """The rankings of the stale clients as of `today`: every label's score from one forward pass, the
    order by the routes' `stable_topk`, the history's labels (clients unknown to the version have none)."""
    queries: list[Query] = []
    stamps: list[tuple[int, int]] = []
    for client_id in read.stale:
        live = read.lives.get(client_id)
        try:
            queries.append(recommender.client_query(client_id, NO_FILTERS, live, today))
        except ServiceError:  # unknown to this version: its reads answer 404
            continue
        stamps.append((client_id, live.revision if live is not None else 0))
    if not queries:
        return []
    scores = recommender.scores(queries)
    orders = stable_topk(scores, scores.shape[1]).numpy()  # the whole ranking, in the routes' order
    scores_np = scores.numpy()
    return [
        (
            client_id,
            revision,
            StoredRanking(scores_np[row], orders[row], np.array(sorted(labels_in(query.history)))),
        )
        for row, ((client_id, revision), query) in enumerate(zip(stamps, queries, strict=True))
    ]


Stamp = tuple[str, dt.date]  # the model version and the date a ranking is computed for
Waiter = tuple[str, dt.date, "asyncio.Future[ClientState | None]"]  # the (version, date) a read wants


class RankingRefresher:
    """Keeps the stored rankings of the served version current, from tasks on the event loop: call
    `changed` after a write is acknowledged, `wake` after a reload, `current` for a read that found its
    client's ranking stale."""

    def __init__(self, store: SessionStore, served: Callable[[], ServedVersion]) -> None:
        self._store = store
        self._served = served
        self._waiting: dict[int, list[Waiter]] = {}  # clients reads wait for, refreshed by express passes
        self._express: asyncio.Task[None] | None = None  # the passes for waiting reads, while they wait
        self._pending: dict[int, None] = {}  # clients whose writes made them stale, oldest mark first
        self._sweep: list[int] = []  # every client, after a reload or at midnight: refreshed after those
        self._swept = 0  # how far the sweep went
        self._covered: tuple[str, dt.date] | None = None  # the (version, date) of the sweep
        self._in_flight = 0  # clients of the passes running or storing
        self._storing: dict[int, tuple[Stamp, ClientState]] = {}  # rankings computed, not committed yet
        self._to_store: asyncio.Queue[tuple[Stamp, list[Computed], int]] = asyncio.Queue()
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

    async def current(
        self, client_id: int, version: str, today: dt.date, revision: int
    ) -> ClientState | None:
        """The client's state with its ranking of `version` as of `today`, for a read that found the client
        at `revision` with no ranking stored: the ranking computed at that revision if its commit is under
        way, else from a pass that starts after this call (an express pass: the passes of written clients
        and sweeps go on beside it); None if this refresher cannot give it (it refreshes another version or
        date, or not at all; the client is unknown to the version; the pass failed): the caller computes
        the ranking then."""
        if self._covered != (version, today):
            return None
        stamp, state = self._storing.get(client_id, (None, None))
        if stamp == (version, today) and state is not None and state.revision == revision:
            return state
        future: asyncio.Future[ClientState | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(client_id, []).append((version, today, future))
        self._counted()
        if self._express is None or self._express.done():
            self._express = asyncio.create_task(self._express_passes())
        return await future

    async def idle(self) -> None:
        """Wait until every stale ranking marked so far is refreshed."""
        await self._idle.wait()

    def _counted(self) -> None:
        waiting = len(self._waiting) + len(self._pending) + len(self._sweep) - self._swept + self._in_flight
        RANKINGS_PENDING.set(waiting)
        if waiting:
            self._idle.clear()
        else:
            self._idle.set()

    async def run(self) -> None:
        """Refresh until cancelled."""
        storer = asyncio.create_task(self._store_forever())
        try:
            await self._refresh_forever()
        finally:
            storer.cancel()
            self._covered = None  # no more waiting: reads compute
            if self._express is not None:
                self._express.cancel()
            _answer(self._waiting, None, {})
            self._waiting.clear()

    async def _refresh_forever(self) -> None:
        while True:
            served, today = self._served(), utc_today()
            if self._covered != (served.version, today):
                await self._start_sweep(served.recommender)
                self._covered = (served.version, today)
            if not self._pending and self._swept == len(self._sweep):
                await self._sleep(_seconds_to_midnight())
                continue
            if self._pending:  # writes arriving meanwhile share the pass, which also paces it; sweeps go on
                await asyncio.sleep(SETTLE_SECONDS if len(self._pending) < CHUNK else FLOOD_SETTLE_SECONDS)
            if not await self._pass(served, self._next_chunk(), today, {}):
                await asyncio.sleep(RETRY_SECONDS)

    async def _express_passes(self) -> None:
        """Refresh the clients reads wait for, up to CHUNK a pass, until none waits."""
        while self._waiting:
            waiting = {client_id: self._waiting.pop(client_id) for client_id in list(self._waiting)[:CHUNK]}
            for client_id in waiting:
                self._pending.pop(client_id, None)
            await self._pass(self._served(), list(waiting), utc_today(), waiting)

    async def _pass(
        self, served: ServedVersion, chunk: list[int], today: dt.date, waiting: dict[int, list[Waiter]]
    ) -> bool:
        """Refresh `chunk`: compute its rankings, answer the reads `waiting` for its clients, and queue the
        rankings to be stored (the next pass does not wait for their commit; a read meanwhile takes them
        from `_storing`); False if the pass failed (its clients are computed per request meanwhile).

        The rankings are computed on the event loop (on a thread, the Doc2Vec inference and the forward pass
        would give up the GIL dozens of times and wait to get it back from the busy loop each time: a pass of
        one client took 20 ms there under load); the database is read and written where the store says."""
        await asyncio.sleep(0)  # the loop's requests go first: nothing else in a pass on SQLite suspends
        recommender, stamp = served.recommender, (served.version, today)
        self._in_flight += len(chunk)
        current: dict[int, ClientState] = {}
        try:
            read = await self._store.read_async(read_stale, recommender, self._store, chunk, today)
            computed = rank(recommender, read, today)
        except Exception:  # the database is down, say
            logger.exception("refreshing %d stored rankings failed", len(chunk))
            self._in_flight -= len(chunk)
            return False
        else:
            fresh = {client_id: ClientState(revision, ranking) for client_id, revision, ranking in computed}
            current = read.current | fresh
            self._storing |= {client_id: (stamp, state) for client_id, state in fresh.items()}
            self._to_store.put_nowait((stamp, computed, len(chunk)))
            return True
        finally:
            _answer(waiting, stamp, current)  # those not answered yet: None
            self._counted()

    async def _store_forever(self) -> None:
        """Store the passes' rankings in the order computed, each pass's in one transaction."""
        while True:
            (version, today), computed, clients = await self._to_store.get()
            try:
                await self._store.put_rankings_async(version, today, computed)
                RANKINGS_STORED.inc(len(computed))
            except Exception:  # the database is down, say: the clients are computed again when read
                logger.exception("storing %d rankings failed", len(computed))
            finally:
                for client_id, _, ranking in computed:  # unless a later pass computed the client again
                    entry = self._storing.get(client_id)
                    if entry is not None and entry[1].ranking is ranking:
                        del self._storing[client_id]
                self._in_flight -= clients
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


def _answer(
    waiting: Mapping[int, list[Waiter]], done: tuple[str, dt.date] | None, current: Mapping[int, ClientState]
) -> None:
    """Give each read waiting for a client its state in `current`, computed for `done` (version, date);
    None to those that wanted another version or date, or whose client has none. Reads answered (or
    cancelled) already are left alone."""
    for client_id, waiters in waiting.items():
        for version, today, future in waiters:
            if not future.done():
                future.set_result(current.get(client_id) if (version, today) == done else None)


def _seconds_to_midnight() -> float:
    """Seconds until the next UTC day begins, and one more."""
    now = dt.datetime.now(dt.UTC)
    midnight = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), dt.UTC)
    return (midnight - now).total_seconds() + 1.0
