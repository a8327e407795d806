"""A real `wdrec serve` process over the session's tiny artifacts, called over loopback HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

WDREC = Path(sys.executable).with_name("wdrec")  # the console script installed beside this interpreter
STARTUP_SECONDS = 120.0  # generous: four engineers' test runs may share the 2 cores


@dataclass(frozen=True)
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def worker_pids(server: Server) -> list[int]:
    """The worker processes of a `wdrec serve --workers N` (multiprocessing's resource tracker, also a
    child of the supervisor, left out; so is a worker that exits while it is looked at, as retiring workers
    do during a rolling restart)."""
    pid = server.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children if b"spawn_main" in _cmdline(int(c))]


def _cmdline(pid: int) -> bytes:
    """A process's command line; empty once it has exited."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return b""


def restart_workers(server: Server, how: str, *, admin_key: str = "") -> None:
    """A rolling restart of a server's workers by `how` ("SIGHUP", or "POST /admin/reload" with
    `admin_key`), returning once every worker is a new one."""
    before = set(worker_pids(server))
    if how == "SIGHUP":
        os.kill(server.process.pid, signal.SIGHUP)
    else:
        response = httpx.post(f"{server.url}/admin/reload", headers={"X-API-Key": admin_key}, timeout=60)
        assert response.status_code == 202, response.text
    deadline = time.monotonic() + len(before) * STARTUP_SECONDS
    while time.monotonic() < deadline:
        now = set(worker_pids(server))
        if len(now) == len(before) and not now & before:
            return
        time.sleep(0.2)
    raise AssertionError(f"the workers were not all replaced after {how}:\n{server.log.read_text()}")


def wait_ready(server: Server) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"wdrec serve exited with {server.process.returncode}:\n{server.log.read_text()}"
            )
        try:
            if httpx.get(f"{server.url}/ready", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"wdrec serve not ready after {STARTUP_SECONDS} s:\n{server.log.read_text()}")


def stop(server: Server) -> int:
    """SIGTERM and wait for the PID (uvicorn takes a moment to finish its shutdown)."""
    server.process.send_signal(signal.SIGTERM)
    return server.process.wait(timeout=30)


def launch(artifacts: Path, log: Path, *, workers: int = 1) -> Server:
    """`wdrec serve` starting on a free port, in a process group of its own (so that a test can kill it
    with its workers)."""
    port = free_port()
    command = [str(WDREC), "serve", "--artifacts", str(artifacts), "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", str(workers)]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return Server(f"http://127.0.0.1:{port}", process, log)


@contextmanager
def running_server(artifacts: Path, log: Path, *, workers: int = 1) -> Iterator[Server]:
    """`wdrec serve` on a free port; on exit, SIGTERM it and check that uvicorn shut down gracefully."""
    server = launch(artifacts, log, workers=workers)
    process = server.process
    try:
        wait_ready(server)
        yield server
    finally:
        returncode = stop(server) if process.poll() is None else process.returncode
    # uvicorn finishes its shutdown, then re-raises the signal it caught: killed by SIGTERM, cleanly. Its
    # supervisor of several workers stops them, each shutting down the same way, and exits with 0.
    assert returncode == (-signal.SIGTERM if workers == 1 else 0), log.read_text()
    assert "Application shutdown complete" in log.read_text()


@pytest.fixture(scope="session")
def server(tiny_artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the session's HTTP and browser tests."""
    with running_server(tiny_artifacts, tmp_path_factory.mktemp("server") / "serve.log") as running:
        yield running
