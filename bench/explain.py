"""Benchmark: what explanations cost, against the same rankings without them, measured in the same run.

    .venv/bin/python -m bench.explain [--artifacts DIR] [--clients 300] [--rounds 3]

Without --artifacts, uses (or trains once) the default data set's quick model of bench/serve.py. Three
paths, each timed with and without explanations, alternating round by round so that both see the same load:
- in process: one client's top 10 through `Recommender.top` + `ranked`, and then `explain_rankings` (the
  second feature build and the `explain` + `copurchase_sources` passes), per client, median and p90;
- HTTP: a real `wdrec serve` (1 worker, response cache off, so every request is computed) asked
  GET /recommend/{id}?k=10 with and without explain=true by one connection: median and p90 latency, bytes;
- batch: `write_recommendations` for the same clients with and without `reason=True`: clients per second.
Every explained label's contributions must sum to its logit (checked on the HTTP answers). Writes
results/explain.json and results/explain.md.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import torch

from app.batch import write_recommendations
from app.explain import explain_rankings, utc_today
from app.recommender import Recommender
from bench import write_results
from bench.serve import DEFAULT_ROOT, ensure_artifacts
from tests.e2e import conftest as e2e
from tests.e2e.conftest import running_server

K = 10
e2e.STARTUP_SECONDS = 300.0  # loading torch and the artifacts takes long when other work shares the cores


def quantiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median_ms": 1000 * statistics.median(ordered),
        "p90_ms": 1000 * ordered[int(0.9 * (len(ordered) - 1))],
    }


def timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def in_process(recommender: Recommender, rows: list[int], rounds: int) -> dict[str, Any]:
    """Per-client seconds of a top 10, without and with its explanations."""
    plain: list[float] = []
    explained: list[float] = []

    def rank(row: int, explain: bool) -> None:
        query = recommender.row_query(row)
        items = recommender.ranked(recommender.top([query])[0], K)
        if explain:
            explain_rankings(recommender, [query], [items], today=utc_today())

    for _ in range(rounds):
        for row in rows:
            plain.append(timed(partial(rank, row, False)))
            explained.append(timed(partial(rank, row, True)))
    return {"plain": quantiles(plain), "explained": quantiles(explained)}


def over_http(artifacts: Path, client_ids: list[int], rounds: int, log: Path) -> dict[str, Any]:
    """Per-request seconds of GET /recommend without and with explain=true, caches off, one connection."""
    os.environ["WDREC_RECOMMEND_CACHE_SIZE"] = "0"
    os.environ["WDREC_WORKERS"] = "1"
    times: dict[bool, list[float]] = {False: [], True: []}
    sizes: dict[bool, list[int]] = {False: [], True: []}
    worst = 0.0
    with running_server(artifacts, log) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        for client_id in client_ids[:20]:  # warm-up
            http.get(f"/recommend/{client_id}", params={"k": K, "explain": "true"})
        for _ in range(rounds):
            for client_id in client_ids:
                for explain in (False, True):
                    params: dict[str, str | int] = {"k": K, "explain": "true"} if explain else {"k": K}
                    start = time.perf_counter()
                    response = http.get(f"/recommend/{client_id}", params=params)
                    times[explain].append(time.perf_counter() - start)
                    response.raise_for_status()
                    sizes[explain].append(len(response.content))
                    if explain:
                        worst = max(worst, max_sum_error(response.json()))
    return {
        "plain": {**quantiles(times[False]), "bytes": statistics.mean(sizes[False])},
        "explained": {**quantiles(times[True]), "bytes": statistics.mean(sizes[True])},
        "max_abs_sum_minus_logit": worst,
    }


def max_sum_error(body: dict[str, Any]) -> float:
    """The largest |sum of contributions - logit| of an explained answer; raises if one is not finite."""
    errors = [
        abs(
            math.fsum(c["value"] for c in item["explanation"]["contributions"]) - item["explanation"]["logit"]
        )
        for item in body["recommendations"]
    ]
    if not all(math.isfinite(error) for error in errors):
        raise ValueError(f"a contribution is not finite: {body}")
    return max(errors)


def batch(recommender: Recommender, client_ids: list[int], rounds: int, folder: Path) -> dict[str, Any]:
    """Clients per second of `write_recommendations` without and with the reason column (best round)."""
    best: dict[bool, float] = {False: math.inf, True: math.inf}
    for _ in range(rounds):
        for reason in (False, True):
            out = folder / f"top-{reason}.parquet"
            best[reason] = min(
                best[reason],
                timed(
                    partial(write_recommendations, recommender, out, k=K, clients=client_ids, reason=reason)
                ),
            )
    return {
        "plain_clients_per_s": len(client_ids) / best[False],
        "reason_clients_per_s": len(client_ids) / best[True],
    }


def run(artifacts: Path, *, clients: int, rounds: int) -> dict[str, Any]:
    torch.set_num_threads(1)  # as a serving worker scores
    recommender = Recommender.load(artifacts)
    step = max(recommender.n_clients // clients, 1)
    rows = list(range(0, recommender.n_clients, step))[:clients]
    client_ids = [recommender.client_id_at(row) for row in rows]
    with tempfile.TemporaryDirectory() as folder:
        result = {
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, shared with other work",
            "load_average_at_start": os.getloadavg()[0],
            "model": recommender.version,
            "clients": len(rows),
            "rounds": rounds,
            "k": K,
            "in_process": in_process(recommender, rows, rounds),
            "http": over_http(artifacts, client_ids, rounds, Path(folder) / "serve.log"),
            "batch": batch(recommender, client_ids, rounds, Path(folder)),
        }
    result["load_average_at_end"] = os.getloadavg()[0]
    return result


def markdown(result: dict[str, Any]) -> str:
    local, http, bulk = result["in_process"], result["http"], result["batch"]
    plain_rate, reason_rate = bulk["plain_clients_per_s"], bulk["reason_clients_per_s"]

    def ratio(path: dict[str, Any], key: str) -> str:
        return f"{path['explained'][key] / path['plain'][key]:.2f}x"

    lines = [
        "# Explanations: cost of explain=true against the same rankings without",
        "",
        f"Model {result['model']}, {result['clients']} clients x {result['rounds']} rounds, "
        f"top {result['k']}; "
        f"{result['machine']} (load average {result['load_average_at_start']:.1f} at start, "
        f"{result['load_average_at_end']:.1f} at end): only the ratios mean much.",
        "",
        "| path | without | with explanations | ratio |",
        "|---|---:|---:|---:|",
        f"| in process, median ms per client | {local['plain']['median_ms']:.2f} | "
        f"{local['explained']['median_ms']:.2f} | {ratio(local, 'median_ms')} |",
        f"| in process, p90 ms | {local['plain']['p90_ms']:.2f} | {local['explained']['p90_ms']:.2f} | "
        f"{ratio(local, 'p90_ms')} |",
        f"| GET /recommend (cache off), median ms | {http['plain']['median_ms']:.2f} | "
        f"{http['explained']['median_ms']:.2f} | {ratio(http, 'median_ms')} |",
        f"| GET /recommend (cache off), p90 ms | {http['plain']['p90_ms']:.2f} | "
        f"{http['explained']['p90_ms']:.2f} | {ratio(http, 'p90_ms')} |",
        f"| GET /recommend, bytes per answer | {http['plain']['bytes']:,.0f} | "
        f"{http['explained']['bytes']:,.0f} | "
        f"{ratio(http, 'bytes')} |",
        f"| `wdrec recommend` (--reason), clients/s | {plain_rate:.0f} | {reason_rate:.0f} | "
        f"{plain_rate / reason_rate:.2f}x the time |",
        "",
        "Largest |sum of contributions - logit| over every explained label: "
        f"{http['max_abs_sum_minus_logit']:.1e}.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, default=None, help="artifacts root (default: train one)")
    parser.add_argument("--clients", type=int, default=300, help="clients to rank (spread over the table)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each path")
    args = parser.parse_args()
    artifacts = args.artifacts or ensure_artifacts(DEFAULT_ROOT)
    result = run(artifacts, clients=args.clients, rounds=args.rounds)
    write_results("explain", result, markdown(result))


if __name__ == "__main__":
    main()
