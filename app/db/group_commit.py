"""Group commit for SQLite: one writer thread per process commits the writes queued while it was busy.

Each SQLite commit waits for an fsync, and one writer at a time holds the database's write lock, so
writes committed one by one queue behind each other's fsync. Here a process's writes go to one thread,
which runs every write waiting at that moment in one transaction and commits it once: under load the
fsync and the lock are paid per batch, and a lone write is committed at once as before. The requests
wait on futures (`submit`), so no thread per waiting request is needed.

No write is reported done unless its transaction committed. A write whose work raises gets its error and
takes nothing with it: the batch's transaction is rolled back and run again without it (the works are
database work only, so running them again is safe), which keeps the common path free of savepoints.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine

from app.db.engine import writing

R = TypeVar("R")


@dataclass(frozen=True)
class _Write(Generic[R]):
    """One queued write: its work and the future its caller waits on."""

    work: Callable[[Connection], R]
    future: Future[R]


class _Failed(Exception):
    """A write's work raised inside a batch: roll the batch back (the write is left out of the next try)."""


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
        with self._closing:
            if self._closed:
                raise RuntimeError("group commit closed")
            self._queue.put(_Write(work, future))
        return future

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
            writes = [
                write for write in batch if write is not None and write.future.set_running_or_notify_cancel()
            ]
            if writes:
                self._commit(writes)
            if None in batch:
                return

    def _commit(self, writes: list[_Write[Any]]) -> None:
        while writes:
            values: list[Any] = []
            try:
                with writing(self.engine) as connection:
                    for write in writes:
                        try:
                            values.append(write.work(connection))
                        except Exception as exc:
                            write.future.set_exception(exc)
                            raise _Failed from exc
            except _Failed:
                writes = [write for write in writes if not write.future.done()]
                continue
            except Exception as exc:  # the commit failed: nothing of the batch is stored
                for write in writes:
                    write.future.set_exception(exc)
                return
            for write, value in zip(writes, values, strict=True):
                write.future.set_result(value)
            return
