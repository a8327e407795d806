"""The recorded clients: sessions and demographics written through the API, read on every ranking.

Every write is committed (durable: see app/db/engine.py) before it returns and raises the client's
revision; a session is stored whole or not at all. Recording is idempotent on (client, session ID): the same
session again returns the stored one, another body under the same ID is a SessionConflictError.

On SQLite, the API's concurrent writes in a process are committed together, by the event loop
(app/db/group_commit.py). PostgreSQL commits concurrent transactions together by itself.

The event loop reads SQLite itself (`read_async`): a read of a few clients is a few hundred microseconds
of a local file the OS has cached, while handing it to a worker thread cost milliseconds under load — the
thread waits for the GIL the busy loop holds, on the way there and back (in bench.serve's mix of reads and
writes a 0.3 ms read took 3.5 ms from the loop's request to its result at the median, 11 ms at the p99).
PostgreSQL's reads are a network round trip each, so they run on worker threads.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, ParamSpec, TypeVar

import anyio.to_thread
import numpy as np
from sqlalchemy import (
    BindParameter,
    Connection,
    Engine,
    Executable,
    Select,
    bindparam,
    func,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import OperationalError

from app.core.config import Settings
from app.db.driver import DriverStatement, ids_in
from app.db.engine import database_url, open_database, writing
from app.db.group_commit import GroupCommit
from app.db.tables import clients, rankings, sessions
from app.errors import SessionConflictError, StoreUnavailableError
from app.live import ClientState, LiveClient, RecordedSession, StoredRanking

logger = logging.getLogger(__name__)

R = TypeVar("R")
P = ParamSpec("P")
StateKey = tuple[int, str | None, dt.date | None]  # client ID, model version (None: no ranking), date


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


@contextlib.contextmanager
def _answering() -> Iterator[None]:
    """A database that does not answer (down, locked past the timeout) is a StoreUnavailableError (also a
    decorator: `@_answering()`)."""
    try:
        yield
    except OperationalError as exc:
        logger.error("database error: %s", exc)
        raise StoreUnavailableError() from exc


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _checked(
    client_id: int, new: NewSession, outcome: tuple[RecordedSession, bool]
) -> tuple[RecordedSession, bool]:
    """`outcome` of recording `new`; SessionConflictError if its ID held another session."""
    stored, created = outcome
    if not created and not new.same_as(stored):
        raise SessionConflictError(client_id, new.session_id, _public(stored))
    return outcome


def _utc(value: dt.datetime) -> dt.datetime:
    """SQLite returns naive datetimes: every stored time is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _recorded(row: Any) -> RecordedSession:
    """A sessions row (Core's, or a `DriverStatement`'s named tuple) as a `RecordedSession`."""
    products = row.products
    return RecordedSession(
        session_id=row.session_id,
        date=row.session_date,
        labels=tuple(row.labels),
        products=tuple(products) if products is not None else None,
        recorded_at=_utc(row.recorded_at),
    )


@dataclass(frozen=True)
class _Statements:
    """The store's statements for one dialect, built once and run with parameters (building a statement
    and its cache key on every call cost more than SQLite's own work); those of every request and write run
    on the driver's cursor (app/db/driver.py)."""

    add_client: DriverStatement  # client, now: the client's row at revision 0 unless it exists
    insert_session: DriverStatement  # the sessions row's columns: its id, or no row if the ID is taken
    find_session: Executable  # client, session_id
    bump: DriverStatement  # client, now: the revision up by one
    bump_demographics: Executable  # client, now, gender, age: created at revision 1, or raised by one
    revisions: DriverStatement  # ids: (client_id, revision) of those recorded
    clients: DriverStatement  # ids: the clients rows of those recorded
    sessions: DriverStatement  # ids, until: their sessions dated until then, each client's oldest first
    newest_sessions: DriverStatement  # ids, until, newest: the same, each client's newest `newest` only
    rankings: DriverStatement  # ids, version, as_of: the rankings stored for those
    put_ranking: Executable  # a rankings row's columns: stored, replacing the client's previous one

    @classmethod
    def of(cls, dialect: Dialect) -> _Statements:
        insert = postgresql.insert if dialect.name == "postgresql" else sqlite.insert
        demographics: dict[str, BindParameter[Any]] = {
            "updated_at": bindparam("now"),
            "gender": bindparam("gender"),
            "age": bindparam("age"),
        }
        session_columns = [column.name for column in sessions.columns if column.name != "id"]
        dated = select(sessions).where(
            ids_in(sessions.c.client_id, dialect), sessions.c.session_date <= bindparam("until")
        )
        return cls(
            add_client=DriverStatement(
                insert(clients)
                .values(client_id=bindparam("client"), revision=0, updated_at=bindparam("now"))
                .on_conflict_do_nothing(index_elements=[clients.c.client_id]),
                dialect,
            ),
            insert_session=DriverStatement(
                insert(sessions)
                .values({name: bindparam(name) for name in session_columns})
                .on_conflict_do_nothing(index_elements=[sessions.c.client_id, sessions.c.session_id])
                .returning(sessions.c.id),
                dialect,
            ),
            find_session=select(sessions).where(
                (sessions.c.client_id == bindparam("client"))
                & (sessions.c.session_id == bindparam("session_id"))
            ),
            bump=DriverStatement(
                update(clients)
                .where(clients.c.client_id == bindparam("client"))
                .values(revision=clients.c.revision + 1, updated_at=bindparam("now")),
                dialect,
            ),
            bump_demographics=insert(clients)
            .values(client_id=bindparam("client"), revision=1, **demographics)
            .on_conflict_do_update(
                index_elements=[clients.c.client_id],
                set_={"revision": clients.c.revision + 1, **demographics},
            ),
            revisions=DriverStatement(
                select(clients.c.client_id, clients.c.revision).where(ids_in(clients.c.client_id, dialect)),
                dialect,
            ),
            clients=DriverStatement(select(clients).where(ids_in(clients.c.client_id, dialect)), dialect),
            sessions=DriverStatement(
                dated.order_by(sessions.c.client_id, sessions.c.session_date, sessions.c.id), dialect
            ),
            newest_sessions=DriverStatement(_newest(dated), dialect),
            rankings=DriverStatement(
                select(
                    rankings.c.client_id,
                    rankings.c.revision,
                    rankings.c.scores,
                    rankings.c.order,
                    rankings.c.bought,
                ).where(
                    ids_in(rankings.c.client_id, dialect),
                    rankings.c.version == bindparam("version"),
                    rankings.c.as_of == bindparam("as_of"),
                ),
                dialect,
            ),
            put_ranking=insert(rankings)
            .values({column.name: bindparam(column.name) for column in rankings.columns})
            .on_conflict_do_update(
                index_elements=[rankings.c.client_id],
                set_={
                    column.name: bindparam(column.name)
                    for column in rankings.columns
                    if column.name != "client_id"
                },
            ),
        )


class SessionStore:
    """Reads and writes recorded clients in one database (thread-safe: one connection per call)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._statements = _Statements.of(engine.dialect)
        self._group = GroupCommit(engine) if engine.dialect.name == "sqlite" else None

    def _write(self, work: Callable[[Connection], R]) -> R:
        """`work` in a committed write transaction."""
        with writing(self.engine) as connection:
            return work(connection)

    async def _write_async(self, work: Callable[[Connection], R]) -> R:
        """`_write` for the event loop: committed with the loop's other writes, by the loop, on SQLite
        (app/db/group_commit.py); on a worker thread on PostgreSQL (it groups concurrent commits itself)."""
        if self._group is not None:
            return await self._group.submit(work)
        return await anyio.to_thread.run_sync(self._write, work)

    async def read_async(self, read: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """`read(*args, **kwargs)` (a read of this store) for the event loop: run by the loop itself on
        SQLite, on a worker thread on PostgreSQL (see the module's docstring)."""
        if self._group is not None:
            return read(*args, **kwargs)
        return await anyio.to_thread.run_sync(partial(read, *args, **kwargs))

    def close(self) -> None:
        self.engine.dispose()

    def revision(self, client_id: int) -> int:
        """The client's revision; 0 when nothing was ever recorded for it."""
        return self.revisions([client_id]).get(client_id, 0)

    @_answering()
    def revisions(self, client_ids: Collection[int]) -> dict[int, int]:
        """The revision of each of `client_ids` that has one, in one query."""
        with self.engine.connect() as connection:
            rows = self._statements.revisions.all(connection, {"ids": list(set(client_ids))})
            return {int(row.client_id): int(row.revision) for row in rows}

    @_answering()
    def states(
        self, client_ids: Collection[int], *, version: str | None = None, as_of: dt.date | None = None
    ) -> dict[int, ClientState]:
        """Each client's revision and, given a model `version` and reference date `as_of`, its ranking stored
        for them if it was computed at that revision (else None), from one read."""
        ids = list(set(client_ids))
        statements = self._statements
        with self.engine.connect() as connection, connection.begin():
            revisions = {
                row.client_id: row.revision for row in statements.revisions.all(connection, {"ids": ids})
            }
            stored = (
                statements.rankings.all(connection, {"ids": ids, "version": version, "as_of": as_of})
                if version is not None
                else []
            )
        states = {client_id: ClientState(revisions.get(client_id, 0), None) for client_id in ids}
        for row in stored:
            if row.revision == states[row.client_id].revision:
                states[row.client_id] = ClientState(row.revision, _stored_ranking(row))
        return states

    def states_of(self, keys: Collection[StateKey]) -> dict[StateKey, ClientState]:
        """`states` for keys of any versions and dates (those of concurrent requests), a read per pair."""
        groups: dict[tuple[str | None, dt.date | None], list[int]] = {}
        for client_id, version, as_of in keys:
            groups.setdefault((version, as_of), []).append(client_id)
        return {
            (client_id, version, as_of): state
            for (version, as_of), client_ids in groups.items()
            for client_id, state in self.states(client_ids, version=version, as_of=as_of).items()
        }

    async def put_rankings_async(
        self, version: str, as_of: dt.date, computed: Sequence[tuple[int, int, StoredRanking]]
    ) -> None:
        """Store rankings of `version` as of `as_of`, each (client ID, the revision it was computed at, the
        ranking), replacing each client's previous one, in one transaction (see `_write_async`)."""
        rows = [
            {
                "client_id": client_id,
                "version": version,
                "as_of": as_of,
                "revision": revision,
                **_ranking_bytes(ranking),
            }
            for client_id, revision, ranking in computed
        ]
        if rows:
            with _answering():
                await self._write_async(
                    lambda connection: connection.execute(self._statements.put_ranking, rows)
                )

    def client(self, client_id: int) -> LiveClient | None:
        """The client's recorded state (one consistent read), or None if nothing was recorded."""
        return self.clients([client_id]).get(client_id)

    @_answering()
    def clients(
        self, client_ids: Collection[int], *, newest: int | None = None, until: dt.date = dt.date.max
    ) -> dict[int, LiveClient]:
        """The recorded state of each of `client_ids` that has one, from one consistent read (a batch of
        rankings reads its clients at once: one round trip instead of one per request), its sessions
        dated on or before `until`. A ranking reads only what the model can see: with `newest`, each
        client's newest `newest` of those, so a read stays the same size however long a history grows."""
        statements = self._statements
        with self.engine.connect() as connection, connection.begin():
            rows = statements.clients.all(connection, {"ids": list(set(client_ids))})
            if not rows:
                return {}
            ids = [row.client_id for row in rows]
            if newest is None:
                recorded = statements.sessions.all(connection, {"ids": ids, "until": until})
            else:
                recorded = statements.newest_sessions.all(
                    connection, {"ids": ids, "until": until, "newest": newest}
                )
            return {live.client_id: live for live in _live_clients(rows, recorded)}

    @_answering()
    def record_session(self, client_id: int, new: NewSession) -> tuple[RecordedSession, bool]:
        """Store `new` durably; (the stored session, True) if new, (it, False) if the same was stored
        before; SessionConflictError if its ID holds another session."""
        return _checked(client_id, new, self._write(partial(self._insert_session, client_id, new, _now())))

    async def record_session_async(self, client_id: int, new: NewSession) -> tuple[RecordedSession, bool]:
        """`record_session` for the event loop (see `_write_async`)."""
        with _answering():
            work = partial(self._insert_session, client_id, new, _now())
            return _checked(client_id, new, await self._write_async(work))

    def _insert_session(
        self, client_id: int, new: NewSession, now: dt.datetime, connection: Connection
    ) -> tuple[RecordedSession, bool]:
        """Insert the session unless its ID is taken, and raise the client's revision if it was inserted:
        (the session, True), or (the one stored under its ID, False) with nothing changed. On PostgreSQL a
        concurrent transaction inserting the same ID is waited for, then its row is the one found."""
        statements = self._statements
        statements.add_client.first(connection, {"client": client_id, "now": now})
        inserted = statements.insert_session.first(
            connection,
            {
                "client_id": client_id,
                "session_id": new.session_id,
                "session_date": new.date,
                "labels": list(new.labels),
                "products": list(new.products) if new.products is not None else None,
                "recorded_at": now,
            },
        )
        if inserted is None:
            found = connection.execute(
                statements.find_session, {"client": client_id, "session_id": new.session_id}
            ).one()
            return _recorded(found), False
        statements.bump.first(connection, {"client": client_id, "now": now})
        return RecordedSession(new.session_id, new.date, new.labels, new.products, now), True

    @_answering()
    def set_demographics(self, client_id: int, *, gender: str | None, age: int | None) -> None:
        """Record the client's gender and age (None: not set), durably."""
        values = {"client": client_id, "now": _now(), "gender": gender, "age": age}
        self._write(lambda connection: connection.execute(self._statements.bump_demographics, values))

    @_answering()
    def recorded_client_ids(self) -> list[int]:
        """The ID of every recorded client, ascending."""
        with self.engine.connect() as connection:
            rows = connection.execute(select(clients.c.client_id).order_by(clients.c.client_id))
            return [int(row.client_id) for row in rows]

    @_answering()
    def all_clients(self) -> Iterator[LiveClient]:
        """Every recorded client, by client ID, from one consistent read (for `wdrec export`)."""
        with self.engine.connect() as connection, connection.begin():
            rows = connection.execute(select(clients).order_by(clients.c.client_id)).all()
            recorded = connection.execute(
                select(sessions).order_by(sessions.c.client_id, sessions.c.session_date, sessions.c.id)
            )
            live = _live_clients(rows, recorded)
        yield from live


def _ranking_bytes(ranking: StoredRanking) -> dict[str, bytes]:
    """A `StoredRanking`'s columns of a rankings row (what `_stored_ranking` reads back)."""
    label_dtype = StoredRanking.label_dtype(len(ranking.scores))
    return {
        "scores": np.ascontiguousarray(ranking.scores, dtype=np.float32).tobytes(),
        "order": ranking.order.astype(label_dtype).tobytes(),
        "bought": ranking.bought.astype(label_dtype).tobytes(),
    }


def _stored_ranking(row: Any) -> StoredRanking:
    """A rankings row as a `StoredRanking` (views of its bytes)."""
    scores = np.frombuffer(row.scores, dtype=np.float32)
    label_dtype = StoredRanking.label_dtype(len(scores))
    return StoredRanking(
        scores, np.frombuffer(row.order, dtype=label_dtype), np.frombuffer(row.bought, dtype=label_dtype)
    )


def _newest(dated: Select[Any]) -> Select[Any]:
    """`dated` (sessions), each client's newest `newest` only (a parameter too), oldest first."""
    ranked = dated.add_columns(
        func.row_number()
        .over(
            partition_by=sessions.c.client_id, order_by=(sessions.c.session_date.desc(), sessions.c.id.desc())
        )
        .label("newest")
    ).subquery()
    return (
        select(*(ranked.c[column.name] for column in sessions.columns))
        .where(ranked.c.newest <= bindparam("newest"))
        .order_by(ranked.c.client_id, ranked.c.session_date, ranked.c.id)
    )


def _live_clients(rows: Iterable[Any], recorded: Iterable[Any]) -> list[LiveClient]:
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
