"""README.md's examples run as written: every command of its shell blocks, against the embedded default data.

The commands run in a scratch folder holding the project's Makefile and pyproject.toml and a link to this
environment's .venv, so `make run` generates the data, trains and serves there as it would in a checkout.
One change is made to what the README says: port 8000 becomes a free port (this machine may serve 8000
already). Commands that serve (`make run`, `wdrec serve`) are started, awaited until /ready answers, and
stopped; the examples after them talk to that server. A curl must answer JSON without an error.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import free_port

pytestmark = pytest.mark.slow  # generates the default data and trains twice with the default config

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
VENV = Path(sys.executable).parents[1]
SERVE_TIMEOUT_S = 1200.0  # `make run` generates and trains first: minutes on a busy 2-core machine
NOT_RUN = {
    "make test": "runs this test suite itself",
    "docker compose": "needs a Docker engine; tests/e2e/test_docker.py brings the stack up",
}
SERVING = ("make run", ".venv/bin/wdrec serve")


def shell_commands(text: str) -> list[str]:
    """The commands of the README's ```bash blocks, continuation lines joined, in order."""
    commands: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for command in re.sub(r"\\\n\s*", "", block).splitlines():
            if command.strip():
                commands.append(command.strip())
    return commands


def not_run_reason(command: str) -> str | None:
    words = re.sub(r"^(\w+=\S+\s+)+", "", command)  # environment assignments before the command
    return next((why for prefix, why in NOT_RUN.items() if words.startswith(prefix)), None)


@contextmanager
def serving(command: str, cwd: Path, port: int, log: Path) -> Iterator[str]:
    """Run a serving command in its own process group until /ready answers; then stop the whole group."""
    env = {**os.environ, "PORT": str(port)}  # `make run` serves on $(PORT)
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["bash", "-c", command],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVE_TIMEOUT_S
        while not _ready(url):
            assert process.poll() is None, f"{command!r} exited:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"{command!r} not serving:\n{log.read_text()[-3000:]}"
            time.sleep(1.0)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/ready", timeout=2.0).status_code == 200
    except httpx.TransportError:
        return False


def run(command: str, cwd: Path) -> str:
    done = subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, f"{command!r} failed ({done.returncode}):\n{done.stderr[-3000:]}"
    return done.stdout


def check_answer(command: str, output: str) -> None:
    """A curl example must print a JSON answer that is no error."""
    if command.startswith("curl"):
        body = json.loads(output)
        assert "error" not in body, f"{command!r} answered an error: {body}"
        assert body["recommendations"], command


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A folder laid out like a checkout for the README's commands: Makefile, pyproject.toml, .venv."""
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy2(ROOT / name, tmp_path / name)  # copy2 keeps the time: make sees .venv up to date
    (tmp_path / ".venv").symlink_to(VENV)
    return tmp_path


def test_every_readme_command_is_run_or_has_a_reason() -> None:
    commands = shell_commands(README.read_text(encoding="utf-8"))
    assert len(commands) >= 10
    for command in commands:
        known = command.startswith(("make run", ".venv/bin/wdrec ", "curl ")) or not_run_reason(command)
        assert known, f"README command not covered by this test: {command!r}"


def test_readme_points_nowhere_outside_the_repository() -> None:
    text = README.read_text(encoding="utf-8")
    assert "../" not in text and "/work/" not in text
    for target in re.findall(r"\]\(([^)#]+)\)", text):
        assert target.startswith("http") or (ROOT / target).exists(), target


@pytest.mark.timeout(3600)
def test_readme_examples_run_as_written(workdir: Path) -> None:
    port = free_port()
    commands = [
        c.replace("localhost:8000", f"localhost:{port}").replace("--port 8000", f"--port {port}")
        for c in shell_commands(README.read_text(encoding="utf-8"))
    ]
    serve_at = [i for i, c in enumerate(commands) if c.startswith(SERVING)] + [len(commands)]
    # Each serving command serves the examples up to the next one; commands before the first run alone.
    for command in commands[: serve_at[0]]:
        if not not_run_reason(command):
            run(command, workdir)
    for start, end in itertools.pairwise(serve_at):
        with serving(commands[start], workdir, port, workdir / f"serve-{start}.log"):
            for command in commands[start + 1 : end]:
                if not not_run_reason(command) and not command.startswith(".venv/bin/wdrec train"):
                    check_answer(command, run(command, workdir))
        # A training command retrains while nothing serves (it is slow, and frees the cores).
        for command in commands[start + 1 : end]:
            if command.startswith(".venv/bin/wdrec train"):
                run(command, workdir)
    assert (workdir / "campaign.parquet").exists() and (workdir / "new-to-you.csv").exists()
    assert (workdir / "data" / "processed").is_dir()
