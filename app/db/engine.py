"""Which database, how to connect, and bringing its schema up to date.

SQLite is the embedded default: one file, `wdrec.sqlite3`, in a state folder beside the artifacts root
(`<root>/../state/`, or `WDREC_STATE_DIR`), in WAL mode (readers never wait for the writer) with
`synchronous=FULL` (a commit is on disk before it returns, so nothing acknowledged is lost to a crash or
power cut). Writes take the write lock when their transaction begins (`BEGIN IMMEDIATE`, see `writing`), so
two processes never deadlock upgrading a read lock, and writers queue for a lock file beside the database
first (see `sqlite_write_lock`). PostgreSQL (`WDREC_DATABASE_URL`, driver psycopg 3)
serves several replicas; its default `synchronous_commit=on` gives the same guarantee.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO, Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from app.core.config import Settings
from training.artifact_files import METADATA
from training.errors import ConfigError, WdrecError

SQLITE_FILE = "wdrec.sqlite3"
STATE_DIR = "state"
MIGRATIONS = Path(__file__).with_name("migrations")
BUSY_TIMEOUT_MS = 30_000  # a writer waits this long for another process's write lock before failing
WRITE_LOCK_SUFFIX = ".write-lock"  # SQLite: the file writers lock, beside the database
WRITE_TURN_SUFFIX = ".write-turn"  # SQLite: the file a writer locks while it waits for the write lock
WRITE_LOCK_POLL_S = 0.0005
MIGRATION_LOCK = 0x77647265  # PostgreSQL advisory lock key ("wdre"): one replica migrates at a time
# The thread pool has 40 threads. Last in, first out: the few connections a steady load needs stay the ones
# in use, instead of every pooled connection filling a page cache of its own (bench/load.py: RSS growth
# +30 and +35 MB in two runs, +39 and +40 MB first in, first out).
POOL = {"pool_size": 8, "max_overflow": 32, "pool_timeout": 30, "pool_use_lifo": True}

logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # a line per plugin at each start


class DatabaseError(WdrecError):
    """The database cannot be opened or brought up to date; names it (without its password)."""


def default_state_dir(artifacts_dir: Path) -> Path:
    """`state/` beside the artifacts root (the root is the folder holding `current`)."""
    root = artifacts_dir.parent if (artifacts_dir / METADATA).exists() else artifacts_dir
    return root.absolute().parent / STATE_DIR


def database_url(settings: Settings) -> URL:
    """WDREC_DATABASE_URL (postgresql:// means psycopg 3), else the SQLite file in the state folder."""
    if settings.database_url is None:
        state_dir = settings.state_dir or default_state_dir(settings.artifacts_dir)
        return URL.create("sqlite", database=str(state_dir.absolute() / SQLITE_FILE))
    try:
        url = make_url(settings.database_url.get_secret_value())
    except ArgumentError as exc:
        raise ConfigError(f"WDREC_DATABASE_URL: not a database URL ({exc})") from None
    if url.drivername in ("postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg2"):
        return url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() == "sqlite" and url.database:
        return url
    raise ConfigError(
        f"WDREC_DATABASE_URL: unsupported database {url.drivername!r}; expected postgresql://... or "
        "sqlite:////absolute/path.sqlite3"
    )


def describe(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def open_database(url: URL) -> Engine:
    """An engine for `url`, its schema migrated to the newest version; DatabaseError if unreachable."""
    if url.get_backend_name() == "sqlite":
        Path(str(url.database)).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False}, **POOL)
        _configure_sqlite(engine)
    else:
        engine = create_engine(url, pool_pre_ping=True, **POOL)
    try:
        migrate(engine)
    except (SQLAlchemyError, OSError) as exc:
        engine.dispose()
        raise DatabaseError(f"database {describe(url)}: {exc.__class__.__name__}: {exc}".strip()) from exc
    return engine


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _: Any) -> None:
        dbapi_connection.isolation_level = None  # transactions begin where `on_begin` says
        for pragma in ("journal_mode=WAL", "synchronous=FULL", f"busy_timeout={BUSY_TIMEOUT_MS}"):
            dbapi_connection.execute(f"PRAGMA {pragma}")
        dbapi_connection.execute("PRAGMA foreign_keys=ON")

    @event.listens_for(engine, "begin")
    def on_begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get("immediate", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextlib.contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A write transaction, committed on leaving (rolled back on an exception); on SQLite it holds the
    write lock from its start."""
    with contextlib.ExitStack() as stack:
        if engine.dialect.name == "sqlite":
            stack.enter_context(sqlite_write_lock(str(engine.url.database)))
        yield stack.enter_context(transaction(engine))


@contextlib.contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """`writing` for a caller holding SQLite's write lock already (see `sqlite_write_lock_async`)."""
    with engine.connect() as connection:
        connection.execution_options(immediate=True)
        with connection.begin():
            yield connection


@contextlib.contextmanager
def sqlite_write_lock(database: str) -> Iterator[None]:
    """An exclusive lock on the file beside `database`, held for one write transaction, taken in turn.

    Without it, a writer that finds another process's transaction running sleeps in SQLite's busy handler,
    whose back-off grows to 100 ms a sleep: with two worker processes writing, the slowest writes waited
    about a second. This lock is polled every half millisecond instead (by one task per process: a
    process's writes are committed in groups). Polling alone is not fair: a process releasing the lock
    with more writes queued takes it again before the other's next poll, and the other's writes waited for
    a run of batches. So a writer first takes a second file's lock, its turn, and gives it up once it holds
    the write lock: a writer back for the write lock while another waits for it finds that turn taken and
    waits until the other has written. The locks belong to the open files (two writers of one process
    exclude each other too), so a writer that dies releases them. OperationalError (the database is
    unavailable) after BUSY_TIMEOUT_MS."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1e3
    with _lock_files(database) as (turn, lock):
        for file in (turn, lock):
            while not _locked(file, deadline):
                time.sleep(WRITE_LOCK_POLL_S)
        fcntl.flock(turn, fcntl.LOCK_UN)
        yield  # closing the file releases the lock


@contextlib.asynccontextmanager
async def sqlite_write_lock_async(database: str) -> AsyncIterator[None]:
    """`sqlite_write_lock` for an event loop: it polls between the loop's other work."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1e3
    with _lock_files(database) as (turn, lock):
        for file in (turn, lock):
            while not _locked(file, deadline):
                await asyncio.sleep(WRITE_LOCK_POLL_S)
        fcntl.flock(turn, fcntl.LOCK_UN)
        yield


@contextlib.contextmanager
def _lock_files(database: str) -> Iterator[tuple[IO[str], IO[str]]]:
    """The turn's file and the write lock's, beside `database`."""
    with open(database + WRITE_TURN_SUFFIX, "a") as turn, open(database + WRITE_LOCK_SUFFIX, "a") as lock:
        yield turn, lock


def _locked(file: IO[str], deadline: float) -> bool:
    """Whether `file`'s exclusive flock was free and is now held; OperationalError past `deadline`."""
    try:
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        if time.monotonic() > deadline:
            raise OperationalError(
                "lock " + file.name, None, TimeoutError(f"held past {BUSY_TIMEOUT_MS} ms")
            ) from None
        return False


def migrate(engine: Engine) -> None:
    """Upgrade the schema to the newest migration; concurrent processes wait for each other (SQLite's
    write lock, PostgreSQL's advisory lock), so replicas started together migrate once."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with writing(engine) as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
