"""Group commit for SQLite: one writer thread per process commits the writes queued while it was busy.

Each SQLite commit waits for an fsync, and one writer at a time holds the database's write lock, so
writes committed one by one queue behind each other's fsync. Here a process's writes go to one thread,
which runs every write waiting at that moment in one transaction and commits it once: under load the
fsync and the lock are paid per batch, and a lone write is committed at once as before. The requests
wait on futures, so no thread per waiting request is needed: `submit` for a thread, `submit_async` for an
event loop, whose futures are settled together, in one call into each loop per batch (one wake-up of the
loop instead of one per write).

No write is reported done unless its transaction committed. A write whose work raises gets its error and
takes nothing with it: the batch's transaction is rolled back and run again without it (the works are
database work only, so running them again is safe), which keeps the common path free of savepoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine

from app.db.engine import writing
from app.futures import settle

R = TypeVar("R")


@dataclass(frozen=True)
class _Write(Generic[R]):
    """One queued write: its work and the future its caller waits on (a thread's or an event loop's)."""

    work: Callable[[Connection], R]
    future: Future[R] | asyncio.Future[R]

    def start(self) -> bool:
        """False if its caller gave up (cancelled the future) before the write ran: leave it out."""
        if isinstance(self.future, asyncio.Future):
            return not self.future.cancelled()  # a read of its state: the loop's thread may cancel it later
        return self.future.set_running_or_notify_cancel()


class _Failed(Exception):
    """A write's work raised inside a batch: roll the batch back (the write is left out of the next try)."""

    def __init__(self, write: _Write[Any]) -> None:
        super().__init__()
        self.write = write


class GroupCommit:
    """Commits the works given to `submit` (or `run`) in batches, from one thread; `close` to stop it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._queue: queue.SimpleQueue[_Write[Any] | None] = queue.SimpleQueue()
        self._closed = False
        self._closing = threading.Lock()  # no write queued behind the sentinel that stops the thread
        self._thread = threading.Thread(target=self._serve, name="wdrec-group-commit", daemon=True)
        self._thread.start()

    def submit(self, work: Callable[[Connection], R]) -> Future[R]:
        """Queue `work` (run in a write transaction); its future holds what it returned once committed, or
        its error (or the commit's). A write whose future is cancelled before its batch starts is not run."""
        future: Future[R] = Future()
        self._put(_Write(work, future))
        return future

    def submit_async(self, work: Callable[[Connection], R]) -> asyncio.Future[R]:
        """`submit` from an event loop: the future is the running loop's."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._put(_Write(work, future))
        return future

    def _put(self, write: _Write[Any]) -> None:
        with self._closing:
            if self._closed:
                raise RuntimeError("group commit closed")
            self._queue.put(write)

    def run(self, work: Callable[[Connection], R]) -> R:
        """`submit`, then wait for the outcome."""
        return self.submit(work).result()

    def close(self) -> None:
        """Commit what is queued, then stop the thread."""
        with self._closing:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        self._thread.join()

    def _serve(self) -> None:
        while True:
            batch = [self._queue.get()]
            while not self._queue.empty():
                batch.append(self._queue.get())
            writes = [write for write in batch if write is not None and write.start()]
            if writes:
                _report(self._commit(writes))
            if None in batch:
                return

    def _commit(self, writes: list[_Write[Any]]) -> list[tuple[_Write[Any], object]]:
        """Each write with its outcome: what its work returned once committed, or the exception it gets."""
        failed: list[tuple[_Write[Any], object]] = []
        while writes:
            values: list[object] = []
            try:
                with writing(self.engine) as connection:
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


def _report(outcomes: Sequence[tuple[_Write[Any], object]]) -> None:
    """Settle each write's future with its outcome; an event loop's futures in one call into that loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], object]]] = {}
    for write, outcome in outcomes:
        future = write.future
        if isinstance(future, asyncio.Future):
            by_loop.setdefault(future.get_loop(), []).append((future, outcome))
        elif isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
    for loop, settled in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop was closed: no one is left waiting on it
            loop.call_soon_threadsafe(_settle_all, settled)


def _settle_all(settled: list[tuple[asyncio.Future[Any], object]]) -> None:
    for future, outcome in settled:
        settle(future, outcome)
