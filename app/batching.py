"""Micro-batching: requests that arrive while the model is busy are scored together in one forward pass.

Per request, a forward pass over all labels costs about as much for one history as for eight, and every
call to a worker thread costs a hop; under load, batching turns both into per-batch costs. Nothing waits
for a batch to fill: an idle scorer starts on the first request at once, so a lone request pays nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from functools import partial

import anyio.to_thread

from app.errors import ServiceError
from app.recommender import Query, Recommender, TopK

logger = logging.getLogger(__name__)

MakeQuery = Callable[[], Query]  # builds (and validates) a query on the worker thread
Outcome = TopK | ServiceError
Pending = tuple[MakeQuery, "asyncio.Future[TopK]"]


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
        future: asyncio.Future[TopK] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(recommender, []).append((make_query, future))
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
            makers = [make for make, _ in batch]
            outcomes: Sequence[Outcome | Exception]
            try:
                outcomes = await anyio.to_thread.run_sync(partial(score_batch, recommender, makers))
            except Exception as exc:  # a failure of the batch itself fails each of its requests
                logger.exception("scoring a batch of %d failed", len(batch))
                outcomes = [exc] * len(batch)
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():  # the request was cancelled (its client went away)
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)


def score_batch(recommender: Recommender, makers: Sequence[MakeQuery]) -> list[Outcome]:
    """Each maker's ranking, or the ServiceError it raised; the valid queries share one forward pass."""
    parsed: list[Query | ServiceError] = []
    for make in makers:
        try:
            parsed.append(make())
        except ServiceError as exc:
            parsed.append(exc)
    queries = [item for item in parsed if isinstance(item, Query)]
    tops = iter(recommender.top(queries) if queries else [])
    return [next(tops) if isinstance(item, Query) else item for item in parsed]
