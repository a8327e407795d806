"""The store of recorded clients, against a real SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import datetime as dt
import fcntl
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, event, make_url, select, text
from sqlalchemy.exc import OperationalError

from app.db import engine as engine_module
from app.db.engine import WRITE_LOCK_SUFFIX, open_database
from app.db.group_commit import GroupCommit
from app.db.tables import clients, sessions
from app.errors import SessionConflictError
from app.live import RecordedSession
from app.store import NewSession, SessionStore

DAY = dt.date(2026, 11, 30)


@pytest.fixture
def store(database_url: str) -> Iterator[SessionStore]:
    opened = SessionStore(open_database(make_url(database_url)))
    yield opened
    opened.close()


def _session(session_id: str = "s1", *labels: str, date: dt.date = DAY) -> NewSession:
    return NewSession(session_id, date, labels or ("여성샴푸",), None)


def test_record_session_then_the_same_again_returns_the_stored_one(store: SessionStore) -> None:
    first, created = store.record_session(7, _session("s1", "a", "b"))
    again, created_again = store.record_session(7, _session("s1", "a", "b"))
    assert (created, created_again) == (True, False)
    assert again == first and again.labels == ("a", "b") and again.recorded_at.tzinfo is not None
    assert store.revision(7) == 1  # the repeat changed nothing


def test_record_session_another_body_under_a_taken_id_is_a_conflict(store: SessionStore) -> None:
    store.record_session(7, _session("s1", "a"))
    with pytest.raises(SessionConflictError) as caught:
        store.record_session(7, _session("s1", "b"))
    assert caught.value.details["stored"]["labels"] == ["a"]
    with pytest.raises(SessionConflictError):
        store.record_session(7, _session("s1", "a", date=DAY - dt.timedelta(days=1)))
    assert store.revision(7) == 1
    _, created = store.record_session(8, _session("s1", "b"))  # the ID is per client
    assert created


def test_client_lists_sessions_by_date_then_as_recorded_and_bumps_revisions(store: SessionStore) -> None:
    assert store.client(7) is None and store.revision(7) == 0
    store.record_session(7, _session("late", "c", date=DAY))
    store.record_session(7, _session("early", "a", date=DAY - dt.timedelta(days=3)))
    store.record_session(7, _session("late-2", "d", date=DAY))
    store.set_demographics(7, gender="F", age=30)
    live = store.client(7)
    assert live is not None
    assert [s.session_id for s in live.sessions] == ["early", "late", "late-2"]
    assert (live.revision, live.gender, live.age) == (4, "F", 30)
    store.set_demographics(7, gender=None, age=None)
    assert store.client(7).gender is None  # type: ignore[union-attr]


def test_products_are_kept_and_compared(store: SessionStore) -> None:
    new = NewSession("p", DAY, ("a",), (101, 102))
    stored, _ = store.record_session(9, new)
    assert stored.products == (101, 102)
    assert store.record_session(9, NewSession("p", DAY, ("a",), (101, 102)))[1] is False
    with pytest.raises(SessionConflictError):
        store.record_session(9, NewSession("p", DAY, ("a",), (101,)))


def test_a_recorded_session_survives_reopening_the_database(database_url: str) -> None:
    first = SessionStore(open_database(make_url(database_url)))
    first.record_session(5, _session("kept", "x"))
    first.close()
    second = SessionStore(open_database(make_url(database_url)))  # migrating again is a no-op
    try:
        live = second.client(5)
        assert live is not None and [s.labels for s in live.sessions] == [("x",)]
    finally:
        second.close()


def test_a_recorded_session_is_stored_as_core_stores_the_same_values(store: SessionStore) -> None:
    """The session write runs on the driver's cursor with SQLAlchemy's bind processors: the row holds what
    a Core insert of the same values holds, column by column as the driver reads it back."""
    recorded, _ = store.record_session(7, NewSession("raw", DAY, ("a", "b"), (101, 102)))
    labels_only, _ = store.record_session(7, _session("raw-2", "c"))
    with store.engine.begin() as connection:
        connection.execute(
            sessions.insert(),
            [
                {"client_id": 7, "session_id": "core", "session_date": DAY, "labels": ["a", "b"],
                 "products": [101, 102], "recorded_at": recorded.recorded_at},
                {"client_id": 7, "session_id": "core-2", "session_date": DAY, "labels": ["c"],
                 "products": None, "recorded_at": labels_only.recorded_at},
            ],
        )  # fmt: skip
        driver = connection.connection.dbapi_connection
        assert driver is not None
        cursor = driver.cursor()
        cursor.execute("SELECT session_id, session_date, labels, products, recorded_at FROM sessions")
        stored = {row[0]: row[1:] for row in cursor.fetchall()}
        client = connection.execute(select(clients).where(clients.c.client_id == 7)).one()
    assert stored["raw"] == stored["core"] and stored["raw-2"] == stored["core-2"]
    assert client.revision == 2
    updated_at = client.updated_at  # SQLite returns it naive (every stored time is UTC)
    assert (updated_at if updated_at.tzinfo else updated_at.replace(tzinfo=dt.UTC)) == labels_only.recorded_at


def test_a_session_of_labels_stores_no_products_as_sql_null_and_reads_older_json_nulls_alike(
    store: SessionStore,
) -> None:
    """Products are SQL NULL for a session recorded from labels (a read decodes no JSON for them); rows
    written before that, holding the JSON text 'null', read back the same."""
    store.record_session(7, _session("new", "a"))
    with store.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO sessions (client_id, session_id, session_date, labels, products, recorded_at) "
                "SELECT client_id, 'old', session_date, labels, 'null', recorded_at FROM sessions "
                "WHERE session_id = 'new'"
            )
        )
        raw = dict(connection.execute(text("SELECT session_id, products IS NULL FROM sessions")).all())
    assert raw == {"new": True, "old": False}
    live = store.client(7)
    assert live is not None
    assert [(s.session_id, s.products) for s in live.sessions] == [("new", None), ("old", None)]


def test_concurrent_writes_of_one_session_create_it_once(store: SessionStore) -> None:
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda _: store.record_session(3, _session("same", "a"))[1], range(16)))
    assert outcomes.count(True) == 1 and store.revision(3) == 1


def test_concurrent_writes_of_distinct_sessions_keep_every_one(store: SessionStore) -> None:
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: store.record_session(3, _session(f"s{i}", "a")), range(24)))
    live = store.client(3)
    assert live is not None and len(live.sessions) == 24 and live.revision == 24


def test_all_clients_lists_every_client_with_its_sessions(store: SessionStore) -> None:
    store.record_session(2, _session("a", "x"))
    store.set_demographics(1, gender="M", age=None)
    store.record_session(2, _session("b", "y"))
    listed = list(store.all_clients())
    assert [(c.client_id, len(c.sessions)) for c in listed] == [(1, 0), (2, 2)]
    assert listed[0].gender == "M"


def test_clients_reads_many_clients_at_once_as_client_reads_each(store: SessionStore) -> None:
    store.record_session(2, _session("a", "x"))
    store.record_session(4, _session("b", "y"))
    store.record_session(4, _session("c", "z", date=DAY - dt.timedelta(days=1)))
    store.set_demographics(6, gender="F", age=20)
    read = store.clients([2, 3, 4, 6, 4])
    assert sorted(read) == [2, 4, 6]  # 3 has nothing recorded
    assert all(read[client_id] == store.client(client_id) for client_id in read)
    assert [s.session_id for s in read[4].sessions] == ["c", "b"] and read[6].sessions == ()
    assert store.clients([]) == {}


def test_the_driver_reads_equal_cores_reads_of_the_same_rows(store: SessionStore) -> None:
    """`clients` and `revisions` run on the driver's cursor; `all_clients` reads the rows through Core."""
    store.record_session(2, NewSession("p", DAY, ("a", "b"), (101, 102)))
    store.record_session(2, _session("q", "c", date=DAY - dt.timedelta(days=2)))
    store.set_demographics(2, gender="F", age=None)
    store.set_demographics(5, gender=None, age=40)
    store.record_session(9, _session("r", "d"))
    core = {live.client_id: live for live in store.all_clients()}
    assert store.clients([2, 5, 9, 11]) == core and sorted(core) == [2, 5, 9]
    assert store.revisions([2, 5, 9, 11]) == {cid: live.revision for cid, live in core.items()}
    assert store.clients([2], until=DAY - dt.timedelta(days=1))[2].sessions == core[2].sessions[:1]


def test_group_commit_keeps_each_writes_own_outcome(tmp_path: Path) -> None:
    engine = open_database(make_url(f"sqlite:///{tmp_path / 'wdrec.sqlite3'}"))
    group = GroupCommit(engine)
    now = dt.datetime.now(dt.UTC)

    def insert(client_id: int) -> Callable[[Connection], int]:
        def work(connection: Connection) -> int:
            connection.execute(clients.insert().values(client_id=client_id, revision=1, updated_at=now))
            if client_id % 2:
                raise ValueError(client_id)  # this write's insert is rolled back, not the others'
            return client_id

        return work

    async def storm() -> list[int | BaseException]:
        return await asyncio.gather(*(group.submit(insert(i)) for i in range(32)), return_exceptions=True)

    outcomes = asyncio.run(storm())
    assert outcomes[::2] == list(range(0, 32, 2))
    assert [o.args for o in outcomes[1::2] if isinstance(o, ValueError)] == [(i,) for i in range(1, 32, 2)]
    assert _stored(engine) == list(range(0, 32, 2))
    engine.dispose()


def test_revisions_reads_many_clients_at_once_as_revision_reads_each(store: SessionStore) -> None:
    store.record_session(4, _session("a"))
    store.record_session(4, _session("b"))
    store.record_session(9, _session("a"))
    assert store.revisions([4, 9, 77]) == {4: 2, 9: 1}  # 77: nothing recorded, so no revision
    assert [store.revision(client_id) for client_id in (4, 9, 77)] == [2, 1, 0]


def test_read_async_reads_sqlite_on_the_loop_and_postgresql_on_a_worker_thread(
    store: SessionStore, database_url: str
) -> None:
    """SQLite's reads skip the thread hop (under load its GIL wait cost more than the read); a network
    round trip to PostgreSQL must not stop the loop."""
    store.record_session(4, _session("a"))

    def revisions_where(client_ids: list[int]) -> tuple[dict[int, int], int]:
        return store.revisions(client_ids), threading.get_ident()

    async def read() -> tuple[dict[int, int], int, int]:
        revisions, reader = await store.read_async(revisions_where, [4, 9])
        return revisions, reader, threading.get_ident()

    revisions, reader, loop = asyncio.run(read())
    assert revisions == {4: 1}
    assert (reader == loop) == database_url.startswith("sqlite")


def test_concurrent_async_writes_keep_every_outcome(store: SessionStore) -> None:
    """From the event loop, as the API records: distinct sessions all stored, one ID recorded once, and a
    conflict refused without taking the batch's other writes with it. Which of two bodies under one ID
    comes first is the database's choice (PostgreSQL's writes run on concurrent threads): the other's
    writes are the conflicts."""

    async def storm() -> list[tuple[RecordedSession, bool] | BaseException]:
        writes = [store.record_session_async(3, _session(f"s{i}", "a")) for i in range(20)]
        writes += [store.record_session_async(4, _session("same", "b")) for _ in range(10)]
        writes += [store.record_session_async(4, _session("same", "c"))]  # another body under that ID
        return await asyncio.gather(*writes, return_exceptions=True)

    outcomes = asyncio.run(storm())
    assert all(not isinstance(o, BaseException) and o[1] for o in outcomes[:20])
    three, four = store.client(3), store.client(4)
    assert three is not None and len(three.sessions) == 20 and three.revision == 20
    assert four is not None and len(four.sessions) == 1 and four.revision == 1
    stored = four.sessions[0]
    same = outcomes[20:]
    won = [o for o in same if not isinstance(o, BaseException)]
    assert all(recorded == stored for recorded, _ in won) and [created for _, created in won].count(True) == 1
    lost = [o for o in same if isinstance(o, BaseException)]
    assert all(isinstance(o, SessionConflictError) for o in lost)
    assert (len(won), len(lost)) == ((10, 1) if stored.labels == ("b",) else (1, 10))


class _Held:
    """A SQLite database whose write lock another writer holds (another process's, say) until `release`: the
    group commit polls for it meanwhile, and the writes submitted are committed in one batch after."""

    def __init__(self, tmp_path: Path) -> None:
        self.database = tmp_path / "wdrec.sqlite3"
        self.engine = open_database(make_url(f"sqlite:///{self.database}"))
        self.commits: list[int] = []
        event.listen(self.engine, "commit", lambda _: self.commits.append(1))
        self.group = GroupCommit(self.engine)
        self.now = dt.datetime.now(dt.UTC)
        self._lock = open(f"{self.database}{WRITE_LOCK_SUFFIX}", "a")  # noqa: SIM115 (released by `release`)
        fcntl.flock(self._lock, fcntl.LOCK_EX)

    def insert(self, client_id: int) -> Callable[[Connection], int]:
        def work(connection: Connection) -> int:
            connection.execute(clients.insert().values(client_id=client_id, revision=1, updated_at=self.now))
            return client_id

        return work

    def release(self) -> None:
        self._lock.close()

    def stored(self) -> list[int]:
        stored = _stored(self.engine)
        self.engine.dispose()
        return stored


def _stored(engine: Engine) -> list[int]:
    with engine.connect() as connection:
        return list(connection.execute(select(clients.c.client_id).order_by(clients.c.client_id)).scalars())


def test_writes_queued_while_the_write_lock_is_held_are_committed_at_once_by_the_loop(tmp_path: Path) -> None:
    held = _Held(tmp_path)
    threads: set[int] = set()

    def insert(client_id: int) -> Callable[[Connection], int]:
        def work(connection: Connection) -> int:
            threads.add(threading.get_ident())
            return held.insert(client_id)(connection)

        return work

    async def storm() -> tuple[list[int], int]:
        futures = [held.group.submit(insert(i)) for i in range(20)]
        await asyncio.sleep(0.05)  # the group commit polls for the lock meanwhile
        assert not any(future.done() for future in futures) and not held.commits
        held.release()
        return list(await asyncio.gather(*futures)), threading.get_ident()

    written, loop_thread = asyncio.run(storm())
    assert written == list(range(20)) and threads == {loop_thread}
    assert held.commits == [1]  # twenty writes, one transaction
    assert held.stored() == list(range(20))


def test_an_async_write_cancelled_while_queued_is_not_run(tmp_path: Path) -> None:
    held = _Held(tmp_path)

    async def cancel_one() -> list[int | BaseException]:
        futures = [held.group.submit(held.insert(i)) for i in range(3)]
        futures[1].cancel()  # its request went away before its batch began
        held.release()
        return await asyncio.gather(*futures, return_exceptions=True)

    outcomes = asyncio.run(cancel_one())
    assert outcomes[0] == 0 and outcomes[2] == 2 and isinstance(outcomes[1], asyncio.CancelledError)
    assert held.stored() == [0, 2]


def test_a_write_lock_held_past_the_busy_timeout_fails_the_queued_writes_and_the_next_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = _Held(tmp_path)
    monkeypatch.setattr(engine_module, "BUSY_TIMEOUT_MS", 100)

    async def write(*client_ids: int) -> list[int | BaseException]:
        futures = [held.group.submit(held.insert(i)) for i in client_ids]
        return await asyncio.gather(*futures, return_exceptions=True)

    timed_out = asyncio.run(write(1, 2))
    assert all(isinstance(o, OperationalError) and "write-lock" in str(o) for o in timed_out)
    held.release()
    assert asyncio.run(write(3)) == [3]
    assert held.stored() == [3]


def test_a_group_commit_outlives_an_event_loop_closed_with_a_write_queued(tmp_path: Path) -> None:
    held = _Held(tmp_path)

    async def submit_and_leave() -> None:
        held.group.submit(held.insert(5))  # its loop closes, the committer cancelled: no one awaits it

    asyncio.run(submit_and_leave())
    held.release()

    async def write() -> list[int]:
        return list(await asyncio.gather(*(held.group.submit(held.insert(i)) for i in (6, 7))))

    assert asyncio.run(write()) == [6, 7]  # the next loop's writes go on; the abandoned one is left out
    assert held.stored() == [6, 7]


def test_clients_reads_the_newest_sessions_up_to_a_date_as_a_ranking_needs(store: SessionStore) -> None:
    for i, days_ago in enumerate([9, 2, 5, 2, 0, 7, 2, 1]):  # one date thrice: recording order breaks ties
        store.record_session(7, _session(f"s{i}", "a", date=DAY - dt.timedelta(days=days_ago)))
    store.record_session(8, _session("only", "b"))
    everything = store.client(7)
    assert everything is not None and len(everything.sessions) == 8
    newest = store.clients([7, 8], newest=3)
    assert newest[7].sessions == everything.sessions[-3:] and newest[7].revision == everything.revision
    assert [s.session_id for s in newest[8].sessions] == ["only"]
    until = DAY - dt.timedelta(days=2)
    dated = store.clients([7], newest=4, until=until)[7].sessions
    assert dated == tuple(s for s in everything.sessions if s.date <= until)[-4:]
    assert [s.session_id for s in dated] == ["s2", "s1", "s3", "s6"]
