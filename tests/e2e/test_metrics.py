"""GET /metrics on a real `wdrec serve --workers 2`: the counters are summed over both worker processes,
survive a rolling restart, and the run's metrics folder is removed when the server stops."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.app.api.routes.test_admin import add_version
from tests.e2e.conftest import restart_workers, running_server, worker_pids

pytestmark = pytest.mark.slow  # trains the session's tiny artifacts and starts three processes

WORKERS = 2
REQUESTS = 60
ROUTE = "/recommend/{client_id}"


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(f"{url}/metrics", headers={"Connection": "close"}).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def recommended(url: str) -> float:
    labels = frozenset({"method": "GET", "route": ROUTE, "status": "200"}.items())
    return scrape(url).get(("wdrec_http_requests_total", labels), 0.0)


def versions(url: str) -> dict[str, float]:
    samples = scrape(url)
    gauges = {labels: v for (name, labels), v in samples.items() if name == "wdrec_model_version"}
    return {dict(labels)["version"]: v for labels, v in gauges.items()}


def metrics_folder(worker: int) -> Path:
    environ = Path(f"/proc/{worker}/environ").read_bytes().split(b"\0")
    (entry,) = [e for e in environ if e.startswith(b"PROMETHEUS_MULTIPROC_DIR=")]
    return Path(entry.split(b"=", 1)[1].decode())


def test_counters_sum_over_workers_and_survive_a_rolling_restart(
    tiny_artifacts: Path, tmp_path: Path
) -> None:
    root = Path(shutil.copytree(tiny_artifacts, tmp_path / "artifacts", symlinks=True))
    first = json.loads((root / "current" / "metadata.json").read_text(encoding="utf-8"))["version"]
    with running_server(root, tmp_path / "serve.log", workers=WORKERS) as server:
        workers = worker_pids(server)
        folder = metrics_folder(workers[0])
        client_id = httpx.get(f"{server.url}/clients", params={"limit": 1}).json()["clients"][0]["client_id"]
        for _ in range(REQUESTS):  # a new connection each: the kernel spreads them over both workers
            response = httpx.get(f"{server.url}/recommend/{client_id}", headers={"Connection": "close"})
            assert response.status_code == 200
        # Each worker counted some of them in its own file; every scrape, whichever worker answers, sums all.
        assert {int(f.stem.rsplit("_", 1)[1]) for f in folder.glob("counter_*.db")} >= set(workers)
        assert {recommended(server.url) for _ in range(10)} == {REQUESTS}
        assert versions(server.url) == {first: WORKERS}

        add_version(root, "v2")
        restart_workers(server, "SIGHUP")
        # The retired workers' model-version gauges go with them (once the supervisor has reaped each);
        # their counts stay.
        deadline = time.monotonic() + 10.0
        while versions(server.url) != {"v2": WORKERS} and time.monotonic() < deadline:
            time.sleep(0.1)
        assert versions(server.url) == {"v2": WORKERS}
        assert recommended(server.url) == REQUESTS
    assert not folder.exists()
