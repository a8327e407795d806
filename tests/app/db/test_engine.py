"""Which database the settings name, and how it is opened."""

from __future__ import annotations

import fcntl
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import make_url, text
from sqlalchemy.exc import OperationalError

from app.core.config import Settings
from app.db import engine as engine_module
from app.db.engine import WRITE_LOCK_SUFFIX, DatabaseError, database_url, open_database, writing
from training.errors import ConfigError


def test_default_database_is_a_sqlite_file_in_state_beside_the_artifacts_root(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    (root / "v1").mkdir(parents=True)
    (root / "v1" / "metadata.json").write_text("{}")
    expected = str(tmp_path / "state" / "wdrec.sqlite3")
    assert database_url(Settings(artifacts_dir=root)).database == expected
    assert database_url(Settings(artifacts_dir=root / "v1")).database == expected  # a version folder
    assert database_url(Settings(state_dir=tmp_path / "elsewhere")).database == str(
        tmp_path / "elsewhere" / "wdrec.sqlite3"
    )


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg"])
def test_a_postgresql_url_is_driven_by_psycopg_3(scheme: str) -> None:
    url = database_url(Settings(database_url=f"{scheme}://u:secret@db:5432/wdrec"))
    assert url.drivername == "postgresql+psycopg" and url.host == "db" and url.password == "secret"


@pytest.mark.parametrize("value", ["not a url", "mysql://u@h/db", "sqlite://"])
def test_an_unusable_database_url_is_a_config_error_naming_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match="WDREC_DATABASE_URL"):
        database_url(Settings(database_url=value))


def test_sqlite_runs_in_wal_mode_with_full_sync(tmp_path: Path) -> None:
    engine = open_database(make_url(f"sqlite:///{tmp_path / 'db.sqlite3'}"))
    try:
        with engine.connect() as connection:
            assert connection.scalar(text("PRAGMA journal_mode")) == "wal"
            assert connection.scalar(text("PRAGMA synchronous")) == 2  # FULL
            assert connection.scalar(text("SELECT version_num FROM alembic_version")) == "0002"
    finally:
        engine.dispose()


def test_a_sqlite_writer_waits_for_the_write_lock_file_then_writes(tmp_path: Path) -> None:
    database = tmp_path / "db.sqlite3"
    engine = open_database(make_url(f"sqlite:///{database}"))
    try:
        with open(f"{database}{WRITE_LOCK_SUFFIX}", "a") as other:  # another process's writer, say
            fcntl.flock(other, fcntl.LOCK_EX)
            release = threading.Timer(0.2, fcntl.flock, (other, fcntl.LOCK_UN))
            release.start()
            started = time.monotonic()
            with writing(engine) as connection:
                waited = time.monotonic() - started
                connection.execute(text("CREATE TABLE t (x INTEGER)"))
            release.join()
        assert waited >= 0.15  # it waited for the lock ...
        with engine.connect() as connection:  # ... then wrote
            assert connection.scalar(text("SELECT count(*) FROM t")) == 0
    finally:
        engine.dispose()


def test_a_sqlite_write_lock_held_past_the_busy_timeout_is_an_operational_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "db.sqlite3"
    engine = open_database(make_url(f"sqlite:///{database}"))
    monkeypatch.setattr(engine_module, "BUSY_TIMEOUT_MS", 100)
    try:
        with open(f"{database}{WRITE_LOCK_SUFFIX}", "a") as other:
            fcntl.flock(other, fcntl.LOCK_EX)
            with pytest.raises(OperationalError, match="write-lock"), writing(engine):
                pass
    finally:
        engine.dispose()


def test_an_unreachable_database_is_named_without_its_password() -> None:
    from tests.e2e.conftest import free_port

    url = make_url(f"postgresql+psycopg://wdrec:hunter2@127.0.0.1:{free_port()}/wdrec?connect_timeout=2")
    with pytest.raises(DatabaseError, match=r"database postgresql\+psycopg://wdrec:\*\*\*@127\.0\.0\.1") as e:
        open_database(url)
    assert "hunter2" not in str(e.value)
