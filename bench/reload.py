"""Benchmark: throughput and errors of `wdrec serve --workers 2` under wrk while its workers are restarted.

    .venv/bin/python -m bench.reload [--artifacts DIR] [--steady 10] [--reloads 3] [--connections 32]

The server runs over a copy of the artifacts of bench/serve.py (trained there once, reused), since each
restart adds a version to it. wrk (one thread, `--connections` keep-alive connections, GET /recommend over
the first 1,000 clients in turn) measures windows one after another: a steady-state window of `--steady`
seconds, then a restart window that starts 1 s before a rolling restart is requested and ends once both
workers are new ones; `--reloads` restarts by POST /admin/reload, then as many by SIGHUP to the main
process. Each restart window's throughput is compared with the steady window just before it (a ratio from
the same run, so other load on the machine hits both alike). wrk counts connect, read, write and timeout
errors (its "Socket errors") and answers >= 400. Targets: 0 of each, and restart throughput >= 50% of steady.
Writes results/reload.json and results/reload.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx

from bench import RESULTS, targets_table, write_results
from bench.serve import DEFAULT_ROOT, ensure_artifacts
from tests.app.api.routes.test_admin import KEY, add_version
from tests.e2e.conftest import restart_workers, running_server
from tests.e2e.wrk import WrkResult, wrk

WORKERS = 2
TARGET_RATIO = 0.5
LEAD_SECONDS = 1.0  # of load in a restart window before the restart is requested


def _window(
    url: str, paths: list[str], connections: int, *, seconds: float = 0.0, during: Any = None
) -> WrkResult:
    with wrk(url, paths, connections=connections) as load:
        time.sleep(seconds or LEAD_SECONDS)
        if during is not None:
            during()
        return load.stop()


def _figures(result: WrkResult) -> dict[str, Any]:
    return {**asdict(result), "throughput_rps": round(result.throughput, 1)}


def run(artifacts: Path, *, steady: float, reloads: int, connections: int) -> dict[str, Any]:
    ways = ["POST /admin/reload"] * reloads + ["SIGHUP"] * reloads
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(dir=RESULTS / "tmp") as scratch:
        root = Path(shutil.copytree(artifacts, Path(scratch) / "artifacts", symlinks=True))
        os.environ["WDREC_ADMIN_API_KEY"] = KEY  # the server processes inherit it
        with running_server(root, RESULTS / "tmp" / "reload.log", workers=WORKERS) as server:
            clients = httpx.get(f"{server.url}/clients", params={"limit": 1000}).json()["clients"]
            paths = [f"/recommend/{client['client_id']}?k=10" for client in clients]
            _window(server.url, paths, connections, seconds=steady)  # warm-up: caches, TorchScript
            for n, how in enumerate(ways, start=2):
                before = _window(server.url, paths, connections, seconds=steady)
                add_version(root, f"v{n}")
                started = time.perf_counter()
                during = _window(
                    server.url,
                    paths,
                    connections,
                    during=lambda h=how: restart_workers(server, h, admin_key=KEY),
                )
                rows.append(
                    {
                        "restart": how,
                        "restart_seconds": round(time.perf_counter() - started - LEAD_SECONDS, 1),
                        "steady": _figures(before),
                        "during": _figures(during),
                        "ratio": round(during.throughput / before.throughput, 3),
                    }
                )
                print(
                    f"{how}: {rows[-1]['ratio']:.2f} of steady, errors {during.socket_errors + during.status}"
                )
            model = httpx.get(f"{server.url}/model").json()
    windows = [row[w] for row in rows for w in ("steady", "during")]
    socket_errors = sum(w["connect"] + w["read"] + w["write"] + w["timeout"] for w in windows)
    failed = sum(w["status"] for w in windows)
    ratios = [row["ratio"] for row in rows]
    return {
        "setup": {
            "workers": WORKERS,
            "connections": connections,
            "steady_seconds": steady,
            "cpus": os.cpu_count(),
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
            "model_version": model["version"],
            "n_clients": model["n_clients"],
        },
        "restarts": rows,
        "requests": sum(w["requests"] for w in windows),
        "socket_errors": socket_errors,
        "failed_answers": failed,
        "min_ratio": min(ratios),
        "targets": {
            "0 socket errors (connect, read, write, timeout)": socket_errors == 0,
            "0 answers >= 400": failed == 0,
            f"throughput during every restart >= {TARGET_RATIO:.0%} of steady": min(ratios) >= TARGET_RATIO,
        },
    }


def markdown(result: dict[str, Any]) -> str:
    setup = result["setup"]
    lines = [
        "# Rolling restarts under load (`bench/reload.py`)",
        "",
        f"`wdrec serve --workers {setup['workers']}` over model {setup['model_version']} "
        f"({setup['n_clients']} clients), wrk with {setup['connections']} keep-alive connections on GET "
        f"/recommend (load generator on the same {setup['cpus']} cores, shared with other work: 1-minute "
        f"load average {setup['load_average_1m_at_end']} at the end). Each restart window is compared with "
        f"the {setup['steady_seconds']:g} s steady window just before it.",
        "",
        f"Requests: {result['requests']}, socket errors: {result['socket_errors']}, answers >= 400: "
        f"{result['failed_answers']}",
        "",
        "| restart | seconds | steady req/s | during req/s | ratio | socket errors c/r/w/t steady; during "
        "| >= 400 |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in result["restarts"]:
        st, d = row["steady"], row["during"]
        lines.append(
            f"| {row['restart']} | {row['restart_seconds']:.1f} | {st['throughput_rps']:.0f} "
            f"| {d['throughput_rps']:.0f} | {row['ratio']:.2f} "
            f"| {st['connect']}/{st['read']}/{st['write']}/{st['timeout']}; "
            f"{d['connect']}/{d['read']}/{d['write']}/{d['timeout']} | {st['status'] + d['status']} |"
        )
    lines += [
        "",
        "t: requests unanswered after wrk's 2 s timeout (slow, not dropped); compare the steady windows.",
        "",
        *targets_table(result["targets"]),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--artifacts", type=Path, default=None, help="artifacts root or version folder")
    parser.add_argument("--steady", type=float, default=10.0, help="seconds of each steady-state window")
    parser.add_argument("--reloads", type=int, default=3, help="restarts of each kind")
    parser.add_argument("--connections", type=int, default=32, help="wrk's keep-alive connections")
    args = parser.parse_args()
    RESULTS.joinpath("tmp").mkdir(parents=True, exist_ok=True)
    artifacts = args.artifacts or ensure_artifacts(DEFAULT_ROOT)
    result = run(artifacts, steady=args.steady, reloads=args.reloads, connections=args.connections)
    write_results("reload", result, markdown(result))


if __name__ == "__main__":
    main()
