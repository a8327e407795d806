"""Reads for concurrent requests, coalesced: the requests that arrive while a read runs share the next one.

A GET /recommend reads its client's state from the database (its revision, which says whether a cached
body is current, and the ranking stored for it, app/rankings.py). Read one by one, those reads were half
of a cached answer's CPU (a thread hop, a transaction, a query each). Here the requests that arrive while
a read is running wait for the next one, which reads all their keys in one call: under load the cost is per
batch, and a lone request pays one read as before. The read runs where its store says
(`SessionStore.read_async`): on the event loop for SQLite, on a worker thread for PostgreSQL.

Read-your-writes holds: a request's read always starts after the request arrived, so it sees every write
acknowledged before the request was sent, on any worker or replica.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Hashable, Mapping
from typing import Generic, TypeVar

from app.futures import settle

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class CoalescedReader(Generic[K, V]):
    """Reads values with `read` (keys -> their values; a key it leaves out has the value `missing`), one
    read at a time, each for every key asked for since the previous read started. Use from one event
    loop."""

    def __init__(self, read: Callable[[Collection[K]], Awaitable[Mapping[K, V]]], missing: V) -> None:
        self._read = read
        self._missing = missing
        self._waiting: dict[K, list[asyncio.Future[V]]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def read(self, key: K) -> V:
        """The key's value now; the read's error if it fails."""
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(future)
        if self._reader is None:
            self._reader = asyncio.create_task(self._read_all())
        return await future

    async def _read_all(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, {}
                outcomes: Mapping[K, V | Exception]
                try:
                    outcomes = await self._read(list(batch))
                except Exception as exc:  # each waiting request gets the read's error
                    outcomes = dict.fromkeys(batch, exc)
                for key, futures in batch.items():
                    for future in futures:
                        settle(future, outcomes.get(key, self._missing))
        finally:
            self._reader = None
