"""Micro-batching: requests that arrive while the model is busy are scored together in one forward pass.

Per request, a forward pass over all labels costs about as much for one history as for eight, and every
call to a worker thread costs a hop; under load, batching turns both into per-batch costs. So does reading
the recorded state of the clients a batch ranks: one database read for the whole batch, on its thread.
Nothing waits for a batch to fill: an idle scorer starts on the first request at once, so a lone request
pays nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import anyio.to_thread

from app.errors import ServiceError
from app.filters import Filters
from app.futures import settle
from app.live import LiveClient
from app.recommender import Query, Recommender, TopK
from app.store import SessionStore

logger = logging.getLogger(__name__)

MakeQuery = Callable[[], Query]  # builds (and validates) a query on the worker thread


@dataclass(frozen=True)
class ClientJob:
    """A client's ranking from its current history: its recorded state is read on the worker thread,
    together with the other clients of the batch."""

    store: SessionStore
    client_id: int
    filters: Filters
    today: dt.date  # the reference date of the calendar features


class ClientRanking(NamedTuple):
    """A client's ranking and the recorded state it was computed from (None: nothing recorded)."""

    top: TopK
    live: LiveClient | None


Job = MakeQuery | ClientJob
Outcome = TopK | ClientRanking | ServiceError
Pending = tuple[Job, "asyncio.Future[Any]"]


class BatchScorer:
    """Scores queries on worker threads, at most `threads` batches at a time, each of <= `max_batch`.

    Queries are grouped by the `Recommender` they were made for, so a reload never mixes two versions'
    label ids in one batch. Use from one event loop.
    """

    def __init__(self, *, threads: int, max_batch: int) -> None:
        self.threads = threads
        self.max_batch = max_batch
        self._pending: dict[Recommender, list[Pending]] = {}
        self._busy = 0  # scorer tasks running: counted down in the step that sees the queue empty
        self._tasks: set[asyncio.Task[None]] = set()  # references, or the loop may collect a running task

    async def top(self, recommender: Recommender, make_query: MakeQuery) -> TopK:
        """The ranking of `make_query()`; its ServiceError (unknown labels, bad k...) is raised here."""
        top: TopK = await self._submit(recommender, make_query)
        return top

    async def client(
        self, recommender: Recommender, store: SessionStore, client_id: int, filters: Filters, today: dt.date
    ) -> ClientRanking:
        """The client's ranking as of `today` (its training sessions, then those `store` holds now), the top
        max_k; UnknownClientError if neither has the client."""
        job = ClientJob(store, client_id, filters, today)
        ranking: ClientRanking = await self._submit(recommender, job)
        return ranking

    async def _submit(self, recommender: Recommender, job: Job) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(recommender, []).append((job, future))
        if self._busy < self.threads:
            # Counting tasks by their done-callbacks would race: a request woken by a batch's last result
            # runs before its finished scorer task is forgotten, would find no free scorer, and wait forever.
            self._busy += 1
            task = asyncio.create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _drain(self) -> None:
        try:
            await self._drain_pending()
        finally:
            self._busy -= 1

    async def _drain_pending(self) -> None:
        while self._pending:
            recommender, queue = next(iter(self._pending.items()))
            batch = queue[: self.max_batch]
            del queue[: self.max_batch]
            if not queue:
                del self._pending[recommender]
            jobs = [job for job, _ in batch]
            outcomes: Sequence[Outcome | Exception]
            try:
                outcomes = await anyio.to_thread.run_sync(partial(score_batch, recommender, jobs))
            except Exception as exc:  # a failure of the batch itself fails each of its requests
                logger.exception("scoring a batch of %d failed", len(batch))
                outcomes = [exc] * len(batch)
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                settle(future, outcome)


def score_batch(recommender: Recommender, jobs: Sequence[Job]) -> list[Outcome]:
    """Each job's ranking, or the ServiceError it raised; the valid queries share one forward pass."""
    states = recorded_states(jobs, recommender.max_sessions)
    parsed: list[Query | ServiceError] = []
    lives: list[LiveClient | None] = []
    for job in jobs:
        live = None
        try:
            if not isinstance(job, ClientJob):
                parsed.append(job())
            elif isinstance(state := states[job.store, job.today], ServiceError):
                parsed.append(state)
            else:
                live = state.get(job.client_id)
                parsed.append(recommender.client_query(job.client_id, job.filters, live, job.today))
        except ServiceError as exc:
            parsed.append(exc)
        lives.append(live)
    queries = [item for item in parsed if isinstance(item, Query)]
    tops = iter(recommender.top(queries) if queries else [])
    outcomes: list[Outcome] = []
    for job, item, live in zip(jobs, parsed, lives, strict=True):
        if isinstance(item, ServiceError):
            outcomes.append(item)
        else:
            top = next(tops)
            outcomes.append(ClientRanking(top, live) if isinstance(job, ClientJob) else top)
    return outcomes


def recorded_states(
    jobs: Sequence[Job], newest: int
) -> dict[tuple[SessionStore, dt.date], dict[int, LiveClient] | ServiceError]:
    """The recorded state of the client jobs' clients as of each job's date (its newest `newest` sessions
    up to that date: what the model sees), one read per store and date, or the store's error."""
    wanted: dict[tuple[SessionStore, dt.date], set[int]] = {}
    for job in jobs:
        if isinstance(job, ClientJob):
            wanted.setdefault((job.store, job.today), set()).add(job.client_id)
    states: dict[tuple[SessionStore, dt.date], dict[int, LiveClient] | ServiceError] = {}
    for (store, today), client_ids in wanted.items():
        try:
            states[store, today] = store.clients(client_ids, newest=newest, until=today)
        except ServiceError as exc:
            states[store, today] = exc
    return states
