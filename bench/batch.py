"""Benchmark: every client's top 10 from `wdrec recommend` against asking the API once per client.

    .venv/bin/python -m bench.batch [--artifacts DIR] [--rounds 3] [--connections 32] [--name batch]

Without --artifacts, uses (or trains once) the default data set's quick model of bench/serve.py. The API
path is a real `wdrec serve` with its response caches off (WDREC_RECOMMEND_CACHE_SIZE=0: a campaign ranks
each client once, so nothing would be served from a cache), asked GET /recommend/{id}?k=10 for every client,
two ways: one connection to one worker (a script looping over the clients) and `--connections` keep-alive
connections to 2 workers (the service's best throughput on 2 cores). The batch path is `wdrec recommend`
(one process) writing Parquet; its clients/s counts the ranking and writing, not the loading of the
artifacts (the API's figures exclude its start-up too). Each path keeps its best of `--rounds` rounds.
Peak RSS: the batch process's (the VmHWM its summary line reports), and the API server's process tree's.
The batch file must hold the API's rankings for every client (same labels in the same order). Goal: batch
>= 20x the API's throughput.
Writes results/<name>.json and .md: batch for the default data; batch_lpoint for a version trained on the
`lpoint` preset (`--artifacts results/tmp/products/lpoint-artifacts`, which `bench.products --parts memory`
trains).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import uvloop

from app.core.memory import peak_rss_mb
from bench import RESULTS, targets_table, write_results
from bench.serve import DEFAULT_ROOT, all_client_ids, ensure_artifacts, load_wrk
from tests.e2e.conftest import running_server

WDREC = Path(sys.executable).with_name("wdrec")
TARGET_SPEEDUP = 20.0
K = 10
WRK_SECONDS = 8.0


def tree_peak_rss_mb(pid: int) -> float:
    """VmHWM (peak resident set) of `pid` plus, recursively, of its children, in MB."""
    own = peak_rss_mb(pid) or 0.0
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return own + sum(tree_peak_rss_mb(int(child)) for child in children)


async def fetch_all(url: str, client_ids: list[int], connections: int) -> dict[int, list[str]]:
    """Every client's ranked labels from GET /recommend, over `connections` keep-alive connections."""
    labels: dict[int, list[str]] = {}
    queue = iter(client_ids)

    async def worker(client: httpx.AsyncClient) -> None:
        for client_id in queue:
            response = await client.get(f"/recommend/{client_id}", params={"k": K})
            response.raise_for_status()
            labels[client_id] = [item["label"] for item in response.json()["recommendations"]]

    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=url, limits=httpx.Limits(max_connections=1), timeout=60.0)
            )
            for _ in range(connections)
        ]
        await asyncio.gather(*(worker(client) for client in clients))
    return labels


def api_path(
    artifacts: Path, *, workers: int, connections: int, rounds: int
) -> tuple[dict[str, Any], dict[int, list[str]]]:
    """The best of `rounds` passes over every client through the API, and the rankings it answered."""
    log = RESULTS / "tmp" / f"batch-serve-{workers}.log"
    best = float("inf")
    os.environ["WDREC_RECOMMEND_CACHE_SIZE"] = "0"
    # A database of its own: sessions recorded by other runs (bench.serve's writes) would change rankings.
    state = tempfile.TemporaryDirectory(prefix="batch-state-", dir=RESULTS / "tmp")
    os.environ["WDREC_STATE_DIR"] = state.name
    try:
        with running_server(artifacts, log, workers=workers) as server:
            client_ids = all_client_ids(server.url)
            for _ in range(rounds):
                started = time.perf_counter()
                labels = uvloop.run(fetch_all(server.url, client_ids, connections))
                best = min(best, time.perf_counter() - started)
            rss = tree_peak_rss_mb(server.process.pid)
            capacity = server_capacity(server.url, client_ids, connections) if workers > 1 else None
    finally:
        del os.environ["WDREC_RECOMMEND_CACHE_SIZE"], os.environ["WDREC_STATE_DIR"]
        state.cleanup()
    figures = {
        "workers": workers,
        "connections": connections,
        "clients": len(client_ids),
        "seconds": round(best, 3),
        "clients_per_s": round(len(client_ids) / best, 1),
        "peak_rss_mb": round(rss, 1),
    }
    if capacity is not None:
        figures["wrk_clients_per_s"] = capacity
    print(f"  API, {workers} worker(s), {connections} connection(s): {figures['clients_per_s']} clients/s")
    return figures, labels


def server_capacity(url: str, client_ids: list[int], connections: int) -> float | None:
    """Clients/s the server answers when the load costs it nothing: wrk (C, one thread) cycling through
    every client's GET /recommend at `connections` connections for WRK_SECONDS; None without wrk."""
    if shutil.which("wrk") is None:
        return None
    requests = [("GET", f"/recommend/{client_id}?k={K}", None) for client_id in client_ids]
    done = load_wrk(url, requests, seconds=WRK_SECONDS, connections=connections)
    if done.errors:
        raise RuntimeError(f"{done.errors} errors from GET /recommend under wrk")
    return round(done.requests / done.seconds, 1)


def batch_path(artifacts: Path, out: Path, *, rounds: int) -> dict[str, Any]:
    """The best of `rounds` runs of `wdrec recommend` over every client."""
    runs = []
    for _ in range(rounds):
        command = [str(WDREC), "recommend", "--artifacts", str(artifacts), "--out", str(out), "--k", str(K)]
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        stderr = process.stderr.read() if process.stderr else ""
        code = process.wait()
        wall = time.perf_counter() - started
        if code != 0:
            raise RuntimeError(f"wdrec recommend failed:\n{stderr}")
        found = re.search(
            r"wrote (\d+) rows for (\d+) clients to .* in ([\d.]+) s .* peak RSS (\d+) MB", stderr
        )
        if found is None:
            raise RuntimeError(f"no summary line in wdrec recommend's log:\n{stderr}")
        rows, clients, seconds = int(found[1]), int(found[2]), float(found[3])
        runs.append(
            {
                "clients": clients,
                "rows": rows,
                "seconds": seconds,
                "clients_per_s": round(clients / seconds, 1),
                "wall_seconds_with_loading": round(wall, 2),
                # Its own VmHWM: wait4's ru_maxrss would count this (large) process's pages too, which
                # the child held between fork and exec.
                "peak_rss_mb": float(found[4]),
            }
        )
        print(f"  batch: {runs[-1]['clients_per_s']} clients/s, peak RSS {runs[-1]['peak_rss_mb']} MB")
    return max(runs, key=lambda run: float(run["clients_per_s"]))


def cost_per_client(artifacts: Path, *, rounds: int = 10) -> dict[str, Any]:
    """Milliseconds per client of a batch's two steps on one of the job's scoring threads, as `wdrec
    recommend` runs them (batches of BATCH_CLIENTS dated as of today, one torch thread, the graph
    unspecialised, freed memory kept): the features (the history vectors, then the tensors) and the
    forward pass; the best of `rounds` batches after a warm-up."""
    import torch

    from app.batch import BATCH_CLIENTS
    from app.core.memory import keep_freed_memory
    from app.explain import utc_today
    from app.recommender import Recommender

    recommender = Recommender.load(artifacts)
    keep_freed_memory()
    torch.set_num_threads(1)
    today = utc_today()
    batch = BATCH_CLIENTS
    queries = [recommender.row_query(row % recommender.n_clients, today=today) for row in range(batch)]
    features = forward = float("inf")
    with torch.inference_mode(), torch.jit.optimized_execution(False):
        for _ in range(rounds + 1):
            started = time.perf_counter()
            inputs = recommender.model_inputs(queries)
            built = time.perf_counter()
            recommender.artifacts.model(*inputs)
            features = min(features, built - started)
            forward = min(forward, time.perf_counter() - built)
    return {
        "batch": batch,
        "features_ms_per_client": round(1e3 * features / batch, 3),
        "forward_ms_per_client": round(1e3 * forward / batch, 3),
        "model_version": recommender.version,
    }


def mismatches(out: Path, api: dict[int, list[str]]) -> int:
    """Clients whose ranked labels in the batch file differ from the API's."""
    table = pl.read_parquet(out).sort(["client_id", "rank"])
    batch = {cid: group["label"].to_list() for (cid,), group in table.group_by("client_id")}
    return sum(batch.get(client_id) != labels for client_id, labels in api.items()) + len(
        set(batch) - set(api)
    )


def run(artifacts: Path, *, rounds: int, connections: int) -> dict[str, Any]:
    out = RESULTS / "tmp" / "batch.parquet"
    one, api_labels = api_path(artifacts, workers=1, connections=1, rounds=rounds)
    best_api, _ = api_path(artifacts, workers=2, connections=connections, rounds=rounds)
    batch = batch_path(artifacts, out, rounds=rounds)
    different = mismatches(out, api_labels)
    costs = cost_per_client(artifacts)
    speedup = batch["clients_per_s"] / best_api["clients_per_s"]
    return {
        "setup": {
            "k": K,
            "rounds": rounds,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
            "model_version": costs.pop("model_version"),
        },
        "cost_per_client": costs,
        "api_one_connection": one,
        "api_best": best_api,
        "batch": batch,
        "speedup_vs_api_best": round(speedup, 2),
        "speedup_vs_api_one_connection": round(batch["clients_per_s"] / one["clients_per_s"], 2),
        "speedup_vs_server_capacity": (
            round(batch["clients_per_s"] / best_api["wrk_clients_per_s"], 2)
            if "wrk_clients_per_s" in best_api
            else None
        ),
        "clients_whose_rankings_differ": different,
        "targets": {
            f"batch >= {TARGET_SPEEDUP:g}x the API's best throughput": speedup >= TARGET_SPEEDUP,
            "the same rankings as the API for every client": different == 0,
        },
    }


def markdown(result: dict[str, Any]) -> str:
    costs = result["cost_per_client"]
    setup, one, best, batch = (
        result["setup"],
        result["api_one_connection"],
        result["api_best"],
        result["batch"],
    )
    per_client = 1e3 / float(batch["clients_per_s"])  # ms of the job per client, all included
    one_thread = float(costs["features_ms_per_client"]) + float(costs["forward_ms_per_client"])
    rows = [
        ("API, 1 worker, 1 connection (a script looping over clients)", one),
        (f"API, 2 workers, {best['connections']} connections", best),
        ("`wdrec recommend` (1 process, a scoring thread per core)", batch),
    ]
    capacity = (
        [
            f"The server itself answers more than a Python client can ask: wrk (C) at "
            f"{best['connections']} connections got {best['wrk_clients_per_s']:,.0f} clients/s from the same "
            f"2 workers, so the batch is {result['speedup_vs_server_capacity']}x the server's own capacity. "
            "The target compares with the API as a campaign script uses it (httpx, above).",
            "",
        ]
        if result.get("speedup_vs_server_capacity")
        else []
    )
    lines = [
        "# Batch output benchmark (`bench/batch.py`)",
        "",
        f"Every client's top {setup['k']} ({batch['clients']} clients), best of {setup['rounds']} rounds per "
        f"path, on {setup['cpus']} cores shared with other work (1-minute load average at the end: "
        f"{setup['load_average_1m_at_end']}). The API runs with its response caches off; its clients "
        "share the machine's cores with the server.",
        "",
        "| path | clients/s | seconds | peak RSS MB |",
        "|---|---:|---:|---:|",
        *[
            f"| {name} | {fig['clients_per_s']:,.0f} | {fig['seconds']:.2f} | {fig['peak_rss_mb']:.0f} |"
            for name, fig in rows
        ],
        "",
        f"Batch vs the API's best: **{result['speedup_vs_api_best']}x**; vs one connection: "
        f"{result['speedup_vs_api_one_connection']}x. `wdrec recommend` takes "
        f"{batch['wall_seconds_with_loading']} s in all, loading and verifying the artifacts included (and "
        "ranking its first batch once before its clock starts, as a running server has). Clients whose batch "
        f"ranking differs from the API's: {result['clients_whose_rankings_differ']}.",
        "",
        *capacity,
        f"Where a batch's time goes, on one scoring thread (batches of {costs['batch']}, one torch "
        f"thread): the features {costs['features_ms_per_client']} ms per client (the history vectors looked "
        "up in the artifacts' doc_vectors.npy, the tensors) and the forward pass "
        f"{costs['forward_ms_per_client']} ms per client. The job runs a thread per core side by side and "
        f"spends {per_client:.3f} ms of wall time per client in all ({one_thread / per_client:.2f}x one "
        "thread's features and forward pass); the rest is Python: each client's query, the top k, the rows, "
        "the file. The API pays the same forward pass per client (in batches of the requests that arrive "
        "together) and the same query building, plus HTTP, JSON "
        "and a database.",
        "",
        *targets_table(result["targets"]),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--artifacts", type=Path, default=None, help="artifacts root or version folder")
    parser.add_argument("--rounds", type=int, default=3, help="runs per path; each keeps its best")
    parser.add_argument("--connections", type=int, default=32, help="connections of the API's best path")
    parser.add_argument(
        "--name", default="batch", help="results/<name>.json and .md (default batch; batch_lpoint: lpoint's)"
    )
    args = parser.parse_args()
    RESULTS.joinpath("tmp").mkdir(parents=True, exist_ok=True)
    artifacts = args.artifacts or ensure_artifacts(DEFAULT_ROOT)
    result = run(artifacts, rounds=args.rounds, connections=args.connections)
    write_results(args.name, result, markdown(result))


if __name__ == "__main__":
    main()
