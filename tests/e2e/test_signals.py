"""Signals a real `wdrec serve` process gets before it is ready."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import STARTUP_SECONDS, WDREC, Server, free_port, stop, wait_ready

pytestmark = pytest.mark.slow  # trains the session's tiny artifacts and starts uvicorn


def _wait_for(log: Path, text: str) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while text not in log.read_text():
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not logged within {STARTUP_SECONDS} s:\n{log.read_text()}")
        time.sleep(0.05)


def test_sighup_during_start_up_reloads_once_serving(tiny_artifacts: Path, tmp_path: Path) -> None:
    log, port = tmp_path / "serve.log", free_port()
    command = [str(WDREC), "serve", "--artifacts", str(tiny_artifacts), "--port", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        _wait_for(log, "verifying the artifacts")
        process.send_signal(signal.SIGHUP)  # while it loads: once this ended the process
        wait_ready(server)
        _wait_for(log, "reloaded: serving")
    finally:
        returncode = stop(server) if process.poll() is None else process.returncode
    assert returncode == -signal.SIGTERM, log.read_text()
    assert "SIGHUP during start-up: reloading" in log.read_text()
