"""The recorded clients: sessions and demographics written through the API, read on every ranking.

Every write is committed (durable: see app/db/engine.py) before it returns and raises the client's
revision; a session is stored whole or not at all. Recording is idempotent on (client, session ID): the same
session again returns the stored one, another body under the same ID is a SessionConflictError.

On SQLite, a process's concurrent writes are committed together (`GroupCommit`): each commit waits for an
fsync, and one writer at a time holds the file's write lock, so committing writes one by one queues every
writer behind every other's fsync (and behind SQLite's busy-wait sleeps). PostgreSQL commits concurrent
transactions together by itself.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from functools import wraps
from typing import Any, Generic, ParamSpec, TypeVar

from sqlalchemy import Connection, Engine, Row, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError

from app.core.config import Settings
from app.db.engine import database_url, open_database, writing
from app.db.tables import clients, sessions
from app.errors import SessionConflictError, StoreUnavailableError
from app.live import LiveClient, RecordedSession

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class NewSession:
    """A session to record: labels already checked against the vocabulary (and derived from `products`
    when those were sent)."""

    session_id: str
    date: dt.date
    labels: tuple[str, ...]
    products: tuple[int, ...] | None

    def same_as(self, stored: RecordedSession) -> bool:
        """Whether `stored` is this session recorded before (the same request again)."""
        if (self.date, self.products) != (stored.date, stored.products):
            return False
        return self.products is not None or self.labels == stored.labels


class _Taken(Exception):
    """The session ID is taken by `stored`."""

    def __init__(self, stored: RecordedSession) -> None:
        super().__init__(stored.session_id)
        self.stored = stored


def _unavailable_on_operational_error(method: Callable[P, R]) -> Callable[P, R]:
    """A database that does not answer (down, locked past the timeout) is a StoreUnavailableError."""

    @wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except OperationalError as exc:
            logger.error("database error: %s", exc)
            raise StoreUnavailableError() from exc

    return wrapper


def _utc(value: dt.datetime) -> dt.datetime:
    """SQLite returns naive datetimes: every stored time is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _recorded(row: Row[Any]) -> RecordedSession:
    products = row.products
    return RecordedSession(
        session_id=row.session_id,
        date=row.session_date,
        labels=tuple(row.labels),
        products=tuple(products) if products is not None else None,
        recorded_at=_utc(row.recorded_at),
    )


class _Write(Generic[R]):
    """One write waiting for a group commit: its work, then its result or error."""

    def __init__(self, work: Callable[[Connection], R]) -> None:
        self.work = work
        self.done = False
        self.value: R | None = None
        self.error: BaseException | None = None

    def result(self) -> R:
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]  # set whenever error is not


class GroupCommit:
    """Runs each write in a savepoint of a transaction shared with the writes queued beside it, committed
    once: the first writer to take the lock commits every write queued by then, the others find theirs
    done. A write that raises rolls back its savepoint only; a commit that fails fails every write of it,
    so no write is reported done unless its transaction committed."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._commit_lock = threading.Lock()
        self._queue_lock = threading.Lock()
        self._queue: list[_Write[Any]] = []

    def run(self, work: Callable[[Connection], R]) -> R:
        write = _Write(work)
        with self._queue_lock:
            self._queue.append(write)
        with self._commit_lock:
            if not write.done:
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                self._commit(batch)
        return write.result()

    def _commit(self, batch: list[_Write[Any]]) -> None:
        try:
            with writing(self.engine) as connection:
                for write in batch:
                    try:
                        with connection.begin_nested():
                            write.value = write.work(connection)
                    except Exception as exc:  # this write's own failure: the others go on
                        write.error = exc
        except BaseException as exc:  # the commit failed: nothing of the batch is stored
            for write in batch:
                write.error = exc
        finally:
            for write in batch:
                write.done = True


class SessionStore:
    """Reads and writes recorded clients in one database (thread-safe: one connection per call)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        self._group = GroupCommit(engine) if engine.dialect.name == "sqlite" else None

    def _write(self, work: Callable[[Connection], R]) -> R:
        """`work` in a committed write transaction (shared with concurrent writes on SQLite)."""
        if self._group is not None:
            return self._group.run(work)
        with writing(self.engine) as connection:
            return work(connection)

    def close(self) -> None:
        self.engine.dispose()

    def revision(self, client_id: int) -> int:
        """The client's revision; 0 when nothing was ever recorded for it."""
        return self.revisions([client_id]).get(client_id, 0)

    @_unavailable_on_operational_error
    def revisions(self, client_ids: Collection[int]) -> dict[int, int]:
        """The revision of each of `client_ids` that has one, in one query."""
        query = select(clients.c.client_id, clients.c.revision).where(
            clients.c.client_id.in_(set(client_ids))
        )
        with self.engine.connect() as connection:
            return {int(row.client_id): int(row.revision) for row in connection.execute(query)}

    def client(self, client_id: int) -> LiveClient | None:
        """The client's recorded state (one consistent read), or None if nothing was recorded."""
        return self.clients([client_id]).get(client_id)

    @_unavailable_on_operational_error
    def clients(self, client_ids: Collection[int]) -> dict[int, LiveClient]:
        """The recorded state of each of `client_ids` that has one, from one consistent read (a batch of
        rankings reads its clients at once: one round trip instead of one per request)."""
        with self.engine.connect() as connection, connection.begin():
            rows = connection.execute(select(clients).where(clients.c.client_id.in_(set(client_ids)))).all()
            if not rows:
                return {}
            recorded = connection.execute(
                select(sessions)
                .where(sessions.c.client_id.in_([row.client_id for row in rows]))
                .order_by(sessions.c.client_id, sessions.c.session_date, sessions.c.id)
            )
            return {live.client_id: live for live in _live_clients(rows, recorded)}

    @_unavailable_on_operational_error
    def record_session(self, client_id: int, new: NewSession) -> tuple[RecordedSession, bool]:
        """Store `new` durably; (the stored session, True) if new, (it, False) if the same was stored
        before; SessionConflictError if its ID holds another session."""
        now = dt.datetime.now(dt.UTC)
        try:
            self._write(lambda connection: self._insert_session(connection, client_id, new, now))
        except _Taken as taken:
            if not new.same_as(taken.stored):
                raise SessionConflictError(client_id, new.session_id, _public(taken.stored)) from None
            return taken.stored, False
        return RecordedSession(new.session_id, new.date, new.labels, new.products, now), True

    def _insert_session(
        self, connection: Connection, client_id: int, new: NewSession, now: dt.datetime
    ) -> None:
        # The client's row first: on PostgreSQL its lock orders concurrent writes for one client, so
        # the lookup below sees a session committed by a writer it waited for.
        self._bump(connection, client_id, now, {})
        row = connection.execute(
            select(sessions).where(
                (sessions.c.client_id == client_id) & (sessions.c.session_id == new.session_id)
            )
        ).first()
        if row is not None:
            raise _Taken(_recorded(row))  # rolls back: the revision stays as it was
        connection.execute(
            sessions.insert().values(
                client_id=client_id,
                session_id=new.session_id,
                session_date=new.date,
                labels=list(new.labels),
                products=list(new.products) if new.products is not None else None,
                recorded_at=now,
            )
        )

    @_unavailable_on_operational_error
    def set_demographics(self, client_id: int, *, gender: str | None, age: int | None) -> None:
        """Record the client's gender and age (None: not set), durably."""
        now = dt.datetime.now(dt.UTC)
        self._write(lambda connection: self._bump(connection, client_id, now, {"gender": gender, "age": age}))

    def _bump(self, connection: Connection, client_id: int, now: dt.datetime, values: dict[str, Any]) -> None:
        """Create the client's row, or raise its revision by one, setting `values` too."""
        statement = self._insert(clients).values(client_id=client_id, revision=1, updated_at=now, **values)
        connection.execute(
            statement.on_conflict_do_update(
                index_elements=[clients.c.client_id],
                set_={"revision": clients.c.revision + 1, "updated_at": now, **values},
            )
        )

    @_unavailable_on_operational_error
    def all_clients(self) -> Iterator[LiveClient]:
        """Every recorded client, by client ID, from one consistent read (for `wdrec export`)."""
        with self.engine.connect() as connection, connection.begin():
            rows = connection.execute(select(clients).order_by(clients.c.client_id)).all()
            recorded = connection.execute(
                select(sessions).order_by(sessions.c.client_id, sessions.c.session_date, sessions.c.id)
            )
            live = _live_clients(rows, recorded)
        yield from live


def _live_clients(rows: Iterable[Row[Any]], recorded: Iterable[Row[Any]]) -> list[LiveClient]:
    """The `LiveClient` of each `clients` row, with its rows of `recorded` (sessions, oldest first)."""
    by_client: dict[int, list[RecordedSession]] = {}
    for session_row in recorded:
        by_client.setdefault(session_row.client_id, []).append(_recorded(session_row))
    return [
        LiveClient(row.client_id, row.revision, row.gender, row.age, tuple(by_client.get(row.client_id, ())))
        for row in rows
    ]


def _public(stored: RecordedSession) -> dict[str, Any]:
    return {
        "session_id": stored.session_id,
        "date": stored.date.isoformat(),
        "labels": list(stored.labels),
        "products": list(stored.products) if stored.products is not None else None,
    }


def open_store(settings: Settings) -> SessionStore:
    """The configured database, migrated (DatabaseError naming it if unreachable)."""
    return SessionStore(open_database(database_url(settings)))
