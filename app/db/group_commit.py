"""Group commit for SQLite: a task on each process's event loop commits the writes queued while it was busy.

Each SQLite commit waits for an fsync, and one writer at a time holds the database's write lock, so
writes committed one by one queue behind each other's fsync. Here a process's writes wait for one task,
which takes the write lock (polled between the loop's other work), runs every write queued at that moment in
one transaction and commits it once: under load the fsync and the lock are paid per batch, and a lone write
is committed at once.

The batch runs on the event loop itself, as SQLite's reads do (app/store.py). It stops the loop for about a
millisecond (batches of 14-16 writes in process: p50 1.0 ms, p99 3.0-4.5 ms, the longest 6 ms, at a WAL
checkpoint), while a writer thread, under bench.serve's load, waited for the busy loop to hand back the GIL
after each of the batch's many releases of it (SQLite's calls, the fsync, the lock's polls), and then for
the loop to run the callback settling the batch: there the writes' p99 was 24-25 ms, 20-21 ms on the loop,
with 20% more writes a second.

The price: the COMMIT's fsync stops the loop while it waits, so a disk that stalls (another writer on it, a
cloud volume's hiccup) stalls every request of the process, not only the writes. In process, under a
competing writer on the same disk, the loop stopped for 115-143 ms at the p99. Running the COMMIT alone on a
thread of its own (the statements still on the loop) kept the loop within 2-5 ms there, but under
bench.serve's load it cost what the writer thread had cost (two alternated live runs: the mix's writes p50
21-32 ms against 9-11, p99 44-66 against 18-24; its reads p99 21-35 against 18-23): not taken.

No write is reported done unless its transaction committed. A write whose work raises gets its error and
takes nothing with it: the batch's transaction is rolled back and run again without it (the works are
database work only, so running them again is safe), which keeps the common path free of savepoints.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine

from app.db.engine import sqlite_write_lock_async, transaction
from app.futures import settle

R = TypeVar("R")


@dataclass(frozen=True)
class _Write(Generic[R]):
    """One queued write: its work and the future its request waits on."""

    work: Callable[[Connection], R]
    future: asyncio.Future[R]

    def wanted(self) -> bool:
        """False if its request gave up (cancelled the future) or its loop is gone: leave it out."""
        return not self.future.done() and not self.future.get_loop().is_closed()


class _Failed(Exception):
    """A write's work raised inside a batch: roll the batch back (the write is left out of the next try)."""

    def __init__(self, write: _Write[Any]) -> None:
        super().__init__()
        self.write = write


class GroupCommit:
    """Commits the works given to `submit` in batches, from a task on the event loop (one loop at a time)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._queue: list[_Write[Any]] = []
        self._committer: asyncio.Task[None] | None = None

    def submit(self, work: Callable[[Connection], R]) -> asyncio.Future[R]:
        """Queue `work` (run in a write transaction); the future holds what it returned once committed, or
        its error (or the commit's). A write whose future is cancelled before its batch starts is not run."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._queue.append(_Write(work, future))
        committer = self._committer
        if committer is None or committer.done() or committer.get_loop() is not loop:
            self._committer = loop.create_task(self._commit_queued())
        return future

    async def _commit_queued(self) -> None:
        while self._queue:
            try:
                async with sqlite_write_lock_async(str(self.engine.url.database)):
                    writes, self._queue = [write for write in self._queue if write.wanted()], []
                    outcomes = self._commit(writes)
            except Exception as exc:  # the write lock timed out: the database is unavailable
                writes, self._queue = self._queue, []
                outcomes = [(write, exc) for write in writes]
            for write, outcome in outcomes:
                settle(write.future, outcome)

    def _commit(self, writes: list[_Write[Any]]) -> list[tuple[_Write[Any], object]]:
        """Each write with its outcome: what its work returned once committed, or the exception it gets."""
        failed: list[tuple[_Write[Any], object]] = []
        while writes:
            values: list[object] = []
            try:
                with transaction(self.engine) as connection:
                    for write in writes:
                        try:
                            values.append(write.work(connection))
                        except Exception as exc:
                            failed.append((write, exc))
                            raise _Failed(write) from exc
            except _Failed as failure:
                writes = [write for write in writes if write is not failure.write]
                continue
            except Exception as exc:  # the commit failed: nothing of the batch is stored
                return failed + [(write, exc) for write in writes]
            return failed + list(zip(writes, values, strict=True))
        return failed
