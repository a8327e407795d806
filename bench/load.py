"""Soak test: 64 connections for 60 s on reads and writes mixed; errors, latency, RSS, sessions kept.

    .venv/bin/python -m bench.load [--artifacts DIR] [--seconds 60] [--connections 64]

One `wdrec serve` process over the artifacts of bench/serve.py (trained there once, reused), with the write
API on (WDREC_WRITE_API_KEY) and a fresh SQLite database in a scratch folder. Each connection is a closed loop
(its next request as soon as the previous one is answered) that alternates GET /recommend and POST /score
over seeded requests with real client IDs and labels, and after every WRITE_EVERY such pairs records a new
session (POST /clients/{id}/sessions, a unique session ID, 2 of the model's labels) for one of those
clients: 1 write per 2 x WRITE_EVERY reads, and each write makes that client's next /recommend compute
afresh (its revision changed). Before measuring, one warm-up pass sending each read once reaches steady
state (TorchScript's first runs, /recommend's response cache); the server's RSS is read then ("before"),
sampled every second during the run, and read again at the end ("after"). Growth beyond noise:
after - before > max(RSS_NOISE_MB, RSS_NOISE_SHARE of before). An error is any answer but 200 (201 for a
write) or a transport failure. At the end, the server's own count of sessions written (GET /metrics) must
equal the 201s the load received. Writes results/load.json and results/load.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvloop
from prometheus_client.parser import text_string_to_metric_families

from bench import RESULTS, targets_table, write_results
from bench.serve import DEFAULT_ROOT, Request, build_requests, ensure_artifacts, environment, percentile
from tests.e2e.conftest import running_server

RSS_NOISE_MB, RSS_NOISE_SHARE = 16.0, 0.05
Pair = tuple[tuple[str, Request], tuple[str, Request]]  # (route, request) of /recommend, then of /score
REQUESTS_PER_ROUTE = 512  # cycled through during the run; the warm-up sends each once
WARM_UP_MAX_SECONDS = 90.0
WRITE_EVERY = 5  # read pairs per session write on each connection: 1 write per 10 reads
WRITE_KEY = "bench-load-key"
WRITES = "/clients/{id}/sessions"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclass
class Tally:
    """What the load loop saw: latencies per route, and each failure by kind."""

    latencies: dict[str, list[float]] = field(
        default_factory=lambda: {"/recommend": [], "/score": [], WRITES: []}
    )
    failures: Counter[str] = field(default_factory=Counter)
    rss_samples: list[float] = field(default_factory=list)


async def _send(client: httpx.AsyncClient, route: str, request: Request, tally: Tally, ok: int = 200) -> None:
    method, path, body = request
    headers = {"X-API-Key": WRITE_KEY} if route == WRITES else None
    sent = time.perf_counter()
    try:
        status = (await client.request(method, path, content=body, headers=headers)).status_code
    except httpx.HTTPError as exc:
        tally.failures[f"{route} {type(exc).__name__}"] += 1
        return
    if status == ok:
        tally.latencies[route].append(time.perf_counter() - sent)
    else:
        tally.failures[f"{route} HTTP {status}"] += 1


@dataclass(frozen=True)
class Writes:
    """New sessions to record: for clients of the reads, each with a session ID no other write uses."""

    client_ids: list[int]
    labels: list[str]
    date: str  # yesterday: never a future date on the server's clock

    def request(self, n: int) -> Request:
        labels = [self.labels[n % len(self.labels)], self.labels[(7 * n + 3) % len(self.labels)]]
        body = {"session_id": f"load-{n}", "date": self.date, "labels": sorted(set(labels))}
        path = f"/clients/{self.client_ids[n % len(self.client_ids)]}/sessions"
        return "POST", path, json.dumps(body, ensure_ascii=False).encode()


async def _worker(client: httpx.AsyncClient, mix: list[Pair], writes: Writes | None, start: int,
                  stop: float, tally: Tally, stride: int, once: bool) -> None:  # fmt: skip
    """Pairs start, start + stride, ...: a /recommend then a /score each; a write after every
    WRITE_EVERY pairs (`writes` given)."""
    i = start
    while time.perf_counter() < stop and not (once and i >= len(mix)):
        for route, request in mix[i % len(mix)]:
            await _send(client, route, request, tally)
        if writes is not None and (i // stride) % WRITE_EVERY == WRITE_EVERY - 1:
            await _send(client, WRITES, writes.request(i), tally, ok=201)
        i += stride


async def _sample_rss(pid: int, stop: float, tally: Tally) -> None:
    while time.perf_counter() < stop:
        tally.rss_samples.append(rss_mb(pid))
        await asyncio.sleep(1.0)


async def soak(
    url: str,
    pid: int,
    mix: list[Pair],
    *,
    seconds: float,
    connections: int,
    writes: Writes | None = None,
    once: bool = False,
) -> Tally:
    """`connections` keep-alive connections (one client each: a shared httpx pool serialises checkouts) for
    `seconds`, or (`once`) until every request of `mix` went once; with `writes`, sessions recorded too."""
    tally = Tally()
    stop = time.perf_counter() + seconds
    async with contextlib.AsyncExitStack() as stack:
        limits, headers = httpx.Limits(max_connections=1), {"content-type": "application/json"}
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=url, limits=limits, headers=headers, timeout=30.0)
            )
            for _ in range(connections)
        ]
        workers = [_worker(c, mix, writes, i, stop, tally, connections, once) for i, c in enumerate(clients)]
        await asyncio.gather(_sample_rss(pid, stop, tally), *workers)
    return tally


def interleave(requests: dict[str, list[Request]]) -> list[Pair]:
    """/recommend and /score in pairs: every connection alternates the two kinds."""
    pairs = zip(requests["/recommend"], requests["/score"], strict=True)
    return [(("/recommend", rec), ("/score", score)) for rec, score in pairs]


def _route_figures(latencies: list[float], seconds: float) -> dict[str, float]:
    return {
        "requests": len(latencies),
        "throughput_rps": round(len(latencies) / seconds, 1),
        "p50_ms": round(1e3 * statistics.median(latencies), 2),
        "p99_ms": round(1e3 * percentile(latencies, 0.99), 2),
    }


def _writes(url: str) -> Writes:
    clients = httpx.get(f"{url}/clients", params={"limit": 1000}).json()["clients"]
    labels = [x["name"] for g in httpx.get(f"{url}/labels").json()["groups"] for x in g["labels"]]
    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    return Writes([c["client_id"] for c in clients], labels, yesterday.isoformat())


def _sessions_written(url: str) -> int:
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for sample in family.samples:
            if sample.name == "wdrec_sessions_written_total":
                return int(sample.value)
    raise RuntimeError("GET /metrics has no wdrec_sessions_written_total")


def run(artifacts: Path, *, seconds: float, connections: int) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(dir=RESULTS / "tmp") as state,
        environment(WDREC_WRITE_API_KEY=WRITE_KEY, WDREC_STATE_DIR=state),  # the server inherits them
        running_server(artifacts, RESULTS / "tmp" / "load.log") as server,
    ):
        pid = server.process.pid
        mix = interleave(build_requests(server.url, count=REQUESTS_PER_ROUTE))
        writes = _writes(server.url)
        rss_start = rss_mb(pid)
        warm = uvloop.run(
            soak(server.url, pid, mix, seconds=WARM_UP_MAX_SECONDS, connections=connections, once=True)
        )
        rss_before = rss_mb(pid)
        started = time.perf_counter()
        tally = uvloop.run(
            soak(server.url, pid, mix, seconds=seconds, connections=connections, writes=writes)
        )
        elapsed = time.perf_counter() - started
        rss_after = rss_mb(pid)
        model = httpx.get(f"{server.url}/model").json()
        counted = _sessions_written(server.url)
    allowed = max(RSS_NOISE_MB, RSS_NOISE_SHARE * rss_before)
    every = [x for xs in tally.latencies.values() for x in xs]
    errors = sum(tally.failures.values())
    acknowledged = len(tally.latencies[WRITES])
    return {
        "setup": {
            "connections": connections,
            "seconds": seconds,
            "cpus": os.cpu_count(),
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
            "model_version": model["version"],
            "n_labels": model["n_labels"],
            "n_clients": model["n_clients"],
        },
        "requests": len(every) + errors,
        "errors": errors,
        "failures": dict(tally.failures),
        "warm_up_errors": sum(warm.failures.values()),
        "overall": _route_figures(every, elapsed),
        "routes": {route: _route_figures(xs, elapsed) for route, xs in tally.latencies.items() if xs},
        "rss_mb": {
            "at_start": round(rss_start, 1),
            "before": round(rss_before, 1),
            "after": round(rss_after, 1),
            "peak_during": round(max(tally.rss_samples, default=rss_after), 1),
            "growth": round(rss_after - rss_before, 1),
            "allowed_growth": round(allowed, 1),
        },
        "sessions": {"acknowledged_201": acknowledged, "counted_by_server": counted},
        "targets": {
            "0 errors": errors == 0,
            "RSS growth within noise": rss_after - rss_before <= allowed,
            "every 201 counted by the server (GET /metrics)": counted == acknowledged,
        },
    }


def markdown(result: dict[str, Any]) -> str:
    setup, rss = result["setup"], result["rss_mb"]
    lines = [
        "# Load test (`bench/load.py`)",
        "",
        f"One `wdrec serve` process over model {setup['model_version']} ({setup['n_labels']} labels, "
        f"{setup['n_clients']} clients), {setup['connections']} keep-alive connections for "
        f"{setup['seconds']:g} s, each alternating GET /recommend and POST /score and recording a new "
        f"session (POST {WRITES}, write key) after every {WRITE_EVERY} such pairs (closed loop, load "
        f"generator on the same {setup['cpus']} cores, shared with other work), after a warm-up run of "
        f"reads. 1-minute load average at the end: {setup['load_average_1m_at_end']}.",
        "",
        f"Requests: {result['requests']}, errors: {result['errors']}"
        + (f" ({result['failures']})" if result["failures"] else ""),
        "",
        f"Sessions acknowledged with 201: {result['sessions']['acknowledged_201']}; counted by the server "
        f"(`wdrec_sessions_written_total`): {result['sessions']['counted_by_server']}",
        "",
        "| route | requests | req/s | p50 ms | p99 ms |",
        "|---|---|---|---|---|",
    ]
    for route, r in {**result["routes"], "all": result["overall"]}.items():
        lines.append(
            f"| {route} | {r['requests']} | {r['throughput_rps']:.0f} "
            f"| {r['p50_ms']:.1f} | {r['p99_ms']:.1f} |"
        )
    lines += [
        "",
        "| server RSS | MB |",
        "|---|---|",
        f"| after start-up | {rss['at_start']:.1f} |",
        f"| before (after warm-up) | {rss['before']:.1f} |",
        f"| peak during the run | {rss['peak_during']:.1f} |",
        f"| after | {rss['after']:.1f} |",
        f"| growth (allowed as noise) | {rss['growth']:+.1f} ({rss['allowed_growth']:.1f}) |",
        "",
        *targets_table(result["targets"]),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--artifacts", type=Path, default=None, help="artifacts root or version folder")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured seconds")
    parser.add_argument("--connections", type=int, default=64, help="concurrent keep-alive connections")
    args = parser.parse_args()
    RESULTS.joinpath("tmp").mkdir(parents=True, exist_ok=True)
    artifacts = args.artifacts or ensure_artifacts(DEFAULT_ROOT)
    result = run(artifacts, seconds=args.seconds, connections=args.connections)
    write_results("load", result, markdown(result))


if __name__ == "__main__":
    main()
