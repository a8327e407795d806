"""Reads of concurrent requests coalesced into one query (here revisions), against a real SQLite store."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Collection, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from app.coalesced import CoalescedReader
from app.db.engine import open_database
from app.errors import StoreUnavailableError
from app.store import NewSession, SessionStore

SESSION = NewSession("s1", dt.date(2026, 11, 30), ("여성샴푸",), None)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SessionStore]:
    opened = SessionStore(open_database(URL.create("sqlite", database=str(tmp_path / "wdrec.sqlite3"))))
    yield opened
    opened.close()


class CountingReads:
    """The store's `revisions` read as the app reads (`read_async`), recording the client IDs of each read;
    the first read, once done, waits for `release` before it answers, so requests pile up behind it."""

    def __init__(self, store: SessionStore) -> None:
        self.store = store
        self.reads: list[set[int]] = []
        self.release = asyncio.Event()

    async def __call__(self, client_ids: Collection[int]) -> dict[int, int]:
        self.reads.append(set(client_ids))
        revisions = await self.store.read_async(self.store.revisions, client_ids)
        if len(self.reads) == 1:
            await asyncio.wait_for(self.release.wait(), 10)
        return revisions


def test_requests_arriving_during_a_read_share_the_next_one(store: SessionStore) -> None:
    store.record_session(2, SESSION)
    reads = CountingReads(store)

    async def run() -> list[int]:
        reader = CoalescedReader(reads, missing=0)
        first = asyncio.create_task(reader.read(1))
        await asyncio.sleep(0.05)  # the first read has started, and waits
        later = [asyncio.create_task(reader.read(client_id)) for client_id in (2, 3, 2)]
        await asyncio.sleep(0.05)
        reads.release.set()
        return [await first, *[await task for task in later]]

    assert asyncio.run(run()) == [0, 1, 0, 1]
    assert reads.reads == [{1}, {2, 3}]  # three requests, one read


def test_a_write_acknowledged_before_a_request_is_seen_by_it(store: SessionStore) -> None:
    reads = CountingReads(store)

    async def run() -> tuple[int, int]:
        reader = CoalescedReader(reads, missing=0)
        first = asyncio.create_task(reader.read(5))
        await asyncio.sleep(0.05)  # a read of client 5 is running ...
        store.record_session(5, SESSION)  # ... when a write to it is acknowledged
        second = asyncio.create_task(reader.read(5))  # a request sent after the acknowledgement
        await asyncio.sleep(0.05)
        reads.release.set()
        return await first, await second

    assert asyncio.run(run()) == (0, 1)  # the running read missed the write; the request after it did not
    assert reads.reads == [{5}, {5}]


def test_a_failed_read_fails_its_requests_and_the_next_read_runs(store: SessionStore) -> None:
    calls = 0

    async def flaky(client_ids: Collection[int]) -> dict[int, int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise StoreUnavailableError()
        return store.revisions(client_ids)

    async def run() -> int:
        reader = CoalescedReader(flaky, missing=0)
        with pytest.raises(StoreUnavailableError):
            await reader.read(1)
        return await reader.read(1)

    assert asyncio.run(run()) == 0
