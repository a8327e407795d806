"""Rolling restarts of `wdrec serve --workers 2` under wrk (32 keep-alive connections on /recommend):
3 by POST /admin/reload and 3 by SIGHUP, and not one connection error or non-2xx answer."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import pytest

from tests.app.api.routes.test_admin import KEY, add_version
from tests.e2e.conftest import restart_workers, running_server
from tests.e2e.wrk import WRK, wrk

pytestmark = [
    pytest.mark.slow,  # trains the session's tiny artifacts, starts 14 worker processes in turn
    pytest.mark.skipif(WRK is None, reason="needs Debian's wrk (.ci/run installs it)"),
    pytest.mark.timeout(1800),  # 12 worker start-ups beside wrk; minutes when others share the 2 cores
]

WORKERS = 2
CONNECTIONS = 32
RELOADS = 3  # of each kind
# A request counts as timed out only when it is stuck, not when it is slow: worker start-ups beside wrk on
# shared cores can stretch latencies past wrk's 2 s default (bench/reload.py reports those with it).
TIMEOUT_S = 30


def recommend_paths(url: str) -> list[str]:
    clients = httpx.get(f"{url}/clients", params={"limit": 1000}).json()["clients"]
    return [f"/recommend/{client['client_id']}?k=10" for client in clients]


def served_versions(url: str) -> set[str]:
    """The versions /ready names over fresh connections (the kernel spreads them over the workers)."""
    return {httpx.get(f"{url}/ready", headers={"Connection": "close"}).json()["version"] for _ in range(20)}


def test_six_rolling_restarts_under_wrk_give_no_connection_error_and_no_failed_answer(
    tiny_artifacts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = Path(shutil.copytree(tiny_artifacts, tmp_path / "artifacts", symlinks=True))
    monkeypatch.setenv("WDREC_ADMIN_API_KEY", KEY)  # the server processes inherit it
    ways = ["POST /admin/reload"] * RELOADS + ["SIGHUP"] * RELOADS
    with (
        running_server(root, tmp_path / "serve.log", workers=WORKERS) as server,
        wrk(server.url, recommend_paths(server.url), connections=CONNECTIONS, timeout_s=TIMEOUT_S) as load,
    ):
        time.sleep(1.0)
        for n, how in enumerate(ways, start=2):
            add_version(root, f"v{n}")
            restart_workers(server, how, admin_key=KEY)
            assert served_versions(server.url) == {f"v{n}"}, how
            time.sleep(1.0)
        result = load.stop()
    assert result.requests > 1000  # a real load through all six restarts
    errors = {"connect": result.connect, "read": result.read, "write": result.write}
    assert errors | {"timeout": result.timeout, "non-2xx/3xx": result.status} == dict.fromkeys(
        [*errors, "timeout", "non-2xx/3xx"], 0
    ), result
