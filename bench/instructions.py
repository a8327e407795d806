"""Benchmark: instructions per request through the app in process, counted by valgrind's callgrind.

    .venv/bin/python -m bench.instructions [--scenarios write live-read read ... health] [--requests 800]

The host runs this machine at speeds up to 2x apart, so a change of a few percent in a request's cost is
lost in the noise of any timing (bench.serve's rounds differ by +-15%). How many instructions a request
executes is not. Each scenario runs the ASGI app in process (`create_app` with its lifespan, requests made
16 at a time, every answer checked) under callgrind twice, with `BASE` and `BASE + requests` requests after
the same set-up, and the difference per request is what one request executes: the app's code, FastAPI's,
SQLite's and the model's, not the kernel's (fsync, sockets) nor HTTP parsing (no server runs). Compare two
commits by running it at each. Needs Debian's `valgrind`. Writes results/instructions.json and .md.

Scenarios: `write` (POST /clients/{id}/sessions, a new session each, with the refresh of the client's
stored ranking it causes: the run waits for the refresher to be idle), `live-read` (GET /recommend with
its response cache off, from the stored rankings, each client holding 10 recorded sessions), `read` (the
same for clients with none), `live-read-computed` and `read-computed` (the same with stored rankings off:
every ranking computed), `cached` (GET /recommend answered from its response cache), `health` (GET
/health). Every run waits for the start-up refresh of the stored rankings before its warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import random
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench import RESULTS, write_results
from bench.serve import ensure_artifacts

SCENARIOS = ("write", "live-read", "read", "live-read-computed", "read-computed", "cached", "health")
BASE = 16  # requests of the shorter run: one round of concurrent requests
CONCURRENCY = 16  # requests in flight at once, as 32 connections over 2 workers give each worker
CLIENTS = 256  # the clients a scenario cycles through (each read in a warm-up pass first)
RECORDED = 10  # sessions recorded per client for `live-read`: the newest 10 are what a ranking reads
KEY = "bench-write-key"
COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def child(scenario: str, count: int, artifacts: Path, state: Path) -> None:
    """Set the app up for `scenario`, then make `count` of its requests (run under callgrind)."""
    from app.core.config import Settings
    from app.main import create_app

    settings = Settings(
        artifacts_dir=artifacts,
        state_dir=state,
        write_api_key=KEY,
        recommend_cache_size=10_000 if scenario == "cached" else 0,
        stored_rankings=not scenario.endswith("-computed"),
    )
    asyncio.run(_requests(create_app(settings), scenario, count))


async def _requests(app: Any, scenario: str, count: int) -> None:
    async with app.router.lifespan_context(app):
        await _refreshed(app)
        recommender = app.state.served.recommender
        ids = [recommender.client_id_at(row) for row in range(min(CLIENTS, recommender.n_clients))]
        labels = recommender.vocab.labels
        if scenario != "write":  # the same warm-up in both runs: history vectors inferred, bodies cached
            await _run(app, [("GET", f"/recommend/{client}?k=10", b"") for client in ids])
        if scenario == "write":
            requests = [
                ("POST", f"/clients/{ids[i % len(ids)]}/sessions", _session(f"bench-{i}", labels, i))
                for i in range(count)
            ]
        elif scenario == "health":
            requests = [("GET", "/health", b"")] * count
        else:
            requests = [("GET", f"/recommend/{ids[i % len(ids)]}?k=10", b"") for i in range(count)]
        await _run(app, requests)
        await _refreshed(app)


async def _refreshed(app: Any) -> None:
    """Wait until the app's stored rankings are current (none to wait for when they are off)."""
    if app.state.refresher is not None:
        await app.state.refresher.idle()


def _session(session_id: str, labels: Sequence[str], i: int) -> bytes:
    picked = [labels[(i * 7 + j) % len(labels)] for j in range(3)]
    return json.dumps({"session_id": session_id, "date": "2026-11-30", "labels": picked}).encode()


async def _run(app: Any, requests: list[tuple[str, str, bytes]]) -> None:
    for start in range(0, len(requests), CONCURRENCY):
        batch = requests[start : start + CONCURRENCY]
        statuses = await asyncio.gather(*(_call(app, *request) for request in batch))
        if any(status >= 300 for status in statuses):
            raise RuntimeError(f"unexpected statuses {statuses} for {batch[0][0]} {batch[0][1]}")


async def _call(app: Any, method: str, target: str, body: bytes) -> int:
    """One request through the ASGI app; its status."""
    path, _, query = target.partition("?")
    headers = [(b"host", b"bench"), (b"content-type", b"application/json"), (b"x-api-key", KEY.encode())]
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": query.encode(),
        "headers": [*headers, (b"content-length", str(len(body)).encode())],
        "server": ("bench", 80), "client": ("bench", 1), "root_path": "",
    }  # fmt: skip
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return int(sent[0]["status"])


def prepare_state(artifacts: Path, state: Path) -> None:
    """A database where each of the first `CLIENTS` clients holds `RECORDED` sessions (for `live-read`),
    written before callgrind runs."""
    from app.core.config import Settings
    from app.recommender import Recommender
    from app.store import NewSession, open_store

    recommender = Recommender.load(artifacts / "current")
    store = open_store(Settings(artifacts_dir=artifacts, state_dir=state))
    rng = random.Random(0)
    day = dt.date(2026, 11, 1)
    try:
        for row in range(min(CLIENTS, recommender.n_clients)):
            for i in range(RECORDED):
                labels = tuple(rng.sample(recommender.vocab.labels, 5))
                new = NewSession(f"bench-{i}", day + dt.timedelta(days=i), labels, None)
                store.record_session(recommender.client_id_at(row), new)
    finally:
        store.close()


def instructions(scenario: str, count: int, artifacts: Path, state: Path | None) -> int:
    """The instructions callgrind counts for a child making `count` requests of `scenario` (in a copy of
    `state`, or an empty state folder)."""
    with tempfile.TemporaryDirectory() as tmp:
        own_state = Path(tmp) / "state"
        if state is not None:
            shutil.copytree(state, own_state)
        else:
            own_state.mkdir()
        command = [
            "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
            sys.executable, "-m", "bench.instructions", "--child", scenario, "--count", str(count),
            "--artifacts", str(artifacts), "--state", str(own_state),
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    found = COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"callgrind run of {scenario} x {count} failed:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def measure(scenario: str, requests: int, artifacts: Path, live_state: Path) -> dict[str, Any]:
    """Instructions per request of `scenario`: two runs, `BASE` and `BASE + requests` requests."""
    state = live_state if scenario.startswith("live-read") else None
    short = instructions(scenario, BASE, artifacts, state)
    long = instructions(scenario, BASE + requests, artifacts, state)
    per_request = (long - short) / requests
    print(f"{scenario:18s} {per_request / 1e6:7.3f} M instructions per request", flush=True)
    return {
        "scenario": scenario,
        "requests": requests,
        "instructions": [short, long],
        "per_request": per_request,
    }


def commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() or "unknown"


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Instructions per request (`bench/instructions.py`)",
        "",
        f"Commit `{result['commit']}`, model {result['model']}. The ASGI app in process under valgrind's "
        f"callgrind, {CONCURRENCY} requests at a time; each scenario run with {BASE} and {BASE} + "
        f"{result['requests']} requests after the same set-up, the difference per request (the app's, "
        "FastAPI's, SQLite's and the model's instructions; not the kernel's, not HTTP parsing). The host's "
        "speed does not change these counts: compare commits by running this at each.",
        "",
        "| scenario | what | M instructions per request |",
        "|---|---|---:|",
    ]
    what = {
        "write": "POST /clients/{id}/sessions, a new session each, and the refresh of its stored ranking",
        "live-read": f"GET /recommend, response cache off, clients with {RECORDED} recorded sessions",
        "read": "GET /recommend, response cache off, clients with none recorded",
        "live-read-computed": "the same as live-read, stored rankings off: computed per request",
        "read-computed": "the same as read, stored rankings off: computed per request",
        "cached": "GET /recommend from the response cache",
        "health": "GET /health",
    }
    lines += [
        f"| {row['scenario']} | {what[row['scenario']]} | {row['per_request'] / 1e6:.3f} |"
        for row in result["rows"]
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument(
        "--requests", type=int, default=800, help="requests of the longer run beyond the shorter's"
    )
    parser.add_argument("--jobs", type=int, default=2, help="callgrind runs at once (each uses one core)")
    parser.add_argument("--child", choices=SCENARIOS, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--artifacts", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--state", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.count, args.artifacts, args.state)
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("bench.instructions needs valgrind (Debian: apt-get install valgrind)")
    artifacts = ensure_artifacts(RESULTS / "tmp" / "serve")
    with tempfile.TemporaryDirectory() as tmp:
        live_state = Path(tmp) / "live-state"
        live_state.mkdir()
        if any(scenario.startswith("live-read") for scenario in args.scenarios):
            prepare_state(artifacts, live_state)
        with ThreadPoolExecutor(args.jobs) as pool:
            rows = list(pool.map(lambda s: measure(s, args.requests, artifacts, live_state), args.scenarios))
    model = (artifacts / "current").resolve().name
    result = {"commit": commit(), "model": model, "requests": args.requests, "rows": rows}
    write_results("instructions", result, markdown(result))


if __name__ == "__main__":
    main()
