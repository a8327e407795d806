"""Soak test: 64 connections for 60 s on a mix of GET /recommend and POST /score; errors, latency, RSS.

    .venv/bin/python -m bench.load [--artifacts DIR] [--seconds 60] [--connections 64]

One `wdrec serve` process over the artifacts of bench/serve.py (trained there once, reused). Each connection
is a closed loop (its next request as soon as the previous one is answered) that alternates /recommend and
/score over seeded requests with real client IDs and labels. Before measuring, one warm-up pass sending each
request once reaches steady state (TorchScript's first runs, /recommend's per-client cache); the server's
RSS is read then ("before"), sampled every second during the run, and read again at the end ("after").
Growth beyond noise: after - before > max(RSS_NOISE_MB, RSS_NOISE_SHARE of before). An error is any
non-200 answer or transport failure.
Writes results/load.json and results/load.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvloop

from bench import RESULTS, targets_table, write_results
from bench.serve import DEFAULT_ROOT, Request, build_requests, ensure_artifacts, percentile
from tests.e2e.conftest import running_server

RSS_NOISE_MB, RSS_NOISE_SHARE = 16.0, 0.05
Pair = tuple[tuple[str, Request], tuple[str, Request]]  # (route, request) of /recommend, then of /score
REQUESTS_PER_ROUTE = 512  # cycled through during the run; the warm-up sends each once
WARM_UP_MAX_SECONDS = 90.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclass
class Tally:
    """What the load loop saw: latencies per route, and each failure by kind."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: {"/recommend": [], "/score": []})
    failures: Counter[str] = field(default_factory=Counter)
    rss_samples: list[float] = field(default_factory=list)


async def _send(client: httpx.AsyncClient, route: str, request: Request, tally: Tally) -> None:
    method, path, body = request
    sent = time.perf_counter()
    try:
        status = (await client.request(method, path, content=body)).status_code
    except httpx.HTTPError as exc:
        tally.failures[f"{route} {type(exc).__name__}"] += 1
        return
    if status == 200:
        tally.latencies[route].append(time.perf_counter() - sent)
    else:
        tally.failures[f"{route} HTTP {status}"] += 1


async def _worker(client: httpx.AsyncClient, mix: list[Pair], start: int, stop: float,
                  tally: Tally, stride: int, once: bool) -> None:  # fmt: skip
    """Pairs start, start + stride, ...: a /recommend then a /score each."""
    i = start
    while time.perf_counter() < stop and not (once and i >= len(mix)):
        for route, request in mix[i % len(mix)]:
            await _send(client, route, request, tally)
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
    once: bool = False,
) -> Tally:
    """`connections` keep-alive connections (one client each: a shared httpx pool serialises checkouts) for
    `seconds`, or (`once`) until every request of `mix` went once."""
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
        workers = [_worker(c, mix, i, stop, tally, connections, once) for i, c in enumerate(clients)]
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


def run(artifacts: Path, *, seconds: float, connections: int) -> dict[str, Any]:
    with running_server(artifacts, RESULTS / "tmp" / "load.log") as server:
        pid = server.process.pid
        mix = interleave(build_requests(server.url, count=REQUESTS_PER_ROUTE))
        rss_start = rss_mb(pid)
        warm = uvloop.run(
            soak(server.url, pid, mix, seconds=WARM_UP_MAX_SECONDS, connections=connections, once=True)
        )
        rss_before = rss_mb(pid)
        started = time.perf_counter()
        tally = uvloop.run(soak(server.url, pid, mix, seconds=seconds, connections=connections))
        elapsed = time.perf_counter() - started
        rss_after = rss_mb(pid)
        model = httpx.get(f"{server.url}/model").json()
    allowed = max(RSS_NOISE_MB, RSS_NOISE_SHARE * rss_before)
    every = [x for xs in tally.latencies.values() for x in xs]
    errors = sum(tally.failures.values())
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
        "routes": {route: _route_figures(xs, elapsed) for route, xs in tally.latencies.items()},
        "rss_mb": {
            "at_start": round(rss_start, 1),
            "before": round(rss_before, 1),
            "after": round(rss_after, 1),
            "peak_during": round(max(tally.rss_samples, default=rss_after), 1),
            "growth": round(rss_after - rss_before, 1),
            "allowed_growth": round(allowed, 1),
        },
        "targets": {"0 errors": errors == 0, "RSS growth within noise": rss_after - rss_before <= allowed},
    }


def markdown(result: dict[str, Any]) -> str:
    setup, rss = result["setup"], result["rss_mb"]
    lines = [
        "# Load test (`bench/load.py`)",
        "",
        f"One `wdrec serve` process over model {setup['model_version']} ({setup['n_labels']} labels, "
        f"{setup['n_clients']} clients), {setup['connections']} keep-alive connections for "
        f"{setup['seconds']:g} s, each alternating GET /recommend and POST /score (closed loop, load "
        f"generator on the same {setup['cpus']} cores), after a warm-up run. 1-minute load average "
        f"at the end: "
        f"{setup['load_average_1m_at_end']}.",
        "",
        f"Requests: {result['requests']}, errors: {result['errors']}"
        + (f" ({result['failures']})" if result["failures"] else ""),
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
