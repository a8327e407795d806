"""A throwaway PostgreSQL server for the tests: Debian's `postgresql` binaries, initdb + pg_ctl.

PostgreSQL refuses to run as root, so under root the cluster belongs to the `postgres` user (created by
Debian's package) and each command runs through `runuser`. The server listens on 127.0.0.1 only, on a free
port, with its data in a fresh folder under /tmp that is deleted afterwards. fsync stays on: the
durability tests kill servers of ours, not this one, but nothing here should differ from production.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

from tests.e2e.conftest import free_port

USER = "postgres"  # the OS user owning the cluster under root, and the database superuser


def binaries() -> Path | None:
    """The newest installed PostgreSQL's bin folder (Debian: /usr/lib/postgresql/<major>/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


@dataclass
class PostgresServer:
    bin_dir: Path
    folder: Path
    port: int

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def _run(self, *command: str) -> None:
        as_user = ["runuser", "-u", USER, "--"] if os.geteuid() == 0 else []
        subprocess.run([*as_user, *command], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.folder, USER)
        self._run(str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", USER, "-A", "trust", "-E", "UTF8")
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c max_connections=200"
        log = str(self.folder / "server.log")
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", log, "-w", "start")

    def stop(self) -> None:
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def url(self, database: str = "postgres") -> URL:
        return URL.create(
            "postgresql+psycopg", username=USER, host="127.0.0.1", port=self.port, database=database
        )

    def new_database(self) -> URL:
        """A fresh, empty database on this server."""
        name = f"wdrec_{uuid.uuid4().hex[:12]}"
        engine = create_engine(self.url(), isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return self.url(name)


def start_server() -> PostgresServer | None:
    """A running throwaway server, or None when PostgreSQL is not installed."""
    bin_dir = binaries()
    if bin_dir is None:
        return None
    folder = Path(tempfile.mkdtemp(prefix="wdrec-pg-"))
    folder.chmod(0o755)
    server = PostgresServer(bin_dir, folder, free_port())
    server.start()
    return server


def remove(server: PostgresServer) -> None:
    try:
        server.stop()
    finally:
        shutil.rmtree(server.folder, ignore_errors=True)
