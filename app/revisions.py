"""Clients' revisions for concurrent requests, read from the database together.

A cached GET /recommend body is current only while the database still holds the client's revision it was
computed at, so every cached answer costs one revision read. Read one by one, those reads were half of a
cached answer's CPU (a thread hop, a transaction, a query each). Here the requests that arrive while a
read is running wait for the next one, which reads all their clients in one query: under load the cost is
per batch, and a lone request pays one read as before.

Read-your-writes holds: a request's read always starts after the request arrived, so it sees every write
acknowledged before the request was sent, on any worker or replica.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping

import anyio.to_thread

from app.futures import settle

ReadRevisions = Callable[[Collection[int]], dict[int, int]]


class RevisionReader:
    """Reads revisions with `read` (client IDs -> their revisions) on a worker thread, one read at a time,
    each for every client asked for since the previous read started. Use from one event loop."""

    def __init__(self, read: ReadRevisions) -> None:
        self._read = read
        self._waiting: dict[int, list[asyncio.Future[int]]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def revision(self, client_id: int) -> int:
        """The client's revision now (0 if nothing was ever recorded); the read's error if it fails."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(client_id, []).append(future)
        if self._reader is None:
            self._reader = asyncio.create_task(self._read_all())
        return await future

    async def _read_all(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, {}
                outcomes: Mapping[int, int | Exception]
                try:
                    outcomes = await anyio.to_thread.run_sync(self._read, list(batch))
                except Exception as exc:  # each waiting request gets the read's error
                    outcomes = dict.fromkeys(batch, exc)
                for client_id, futures in batch.items():
                    for future in futures:
                        settle(future, outcomes.get(client_id, 0))
        finally:
            self._reader = None
