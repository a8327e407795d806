"""Benchmark: GET /recommend and POST /score against the trivial GET /health of the same uvicorn server.

    .venv/bin/python -m bench.serve [--artifacts DIR] [--seconds 8] [--rounds 2] [--connections 32]
                                    [--loaders httpx,wrk] [--workers 1,2] [--live-rounds 3]

Without --artifacts, generates the default data set into results/tmp/serve/ and trains the default
architecture for a few epochs there (reused by later runs). The server is `wdrec serve --workers N`, one
run per N: one process, or uvicorn's supervisor and N worker processes.
Load, closed loop (each connection sends its next request as soon as the previous one is answered), from:
- `httpx`: asyncio (uvloop) httpx clients in this process, one keep-alive connection each;
- `wrk`: Debian's wrk (C, one thread), cycling through the same requests (skipped if not installed).
Python's client costs the shared 2 cores more CPU per request than the server's trivial route does, so
its latencies are mostly the client's own; wrk's are the server's. Each route first gets warm-up passes
over its requests (connections, TorchScript's first runs, /recommend's per-client cache: steady state;
3 per worker, since each pass's connections land on workers at random), then `--seconds` of measurement;
routes alternate over `--rounds` rounds and each keeps its best round, so load from other processes hits
all alike. Server CPU per request comes from /proc/<pid>/stat of the server's whole process tree.
Targets (2 cores, 32 connections): /recommend >= 60% of /health's throughput with p99 <= 25 ms;
/score p99 <= 40 ms.

Then live histories (wrk, 2 workers, when wrk is installed): a server with its response cache off
(WDREC_RECOMMEND_CACHE_SIZE=0), its stored rankings on and the write API on, over `--live-rounds` rounds
of: /health; GET /recommend cycling through every client in a shuffled order (each request another client;
answered from stored rankings once the refresher has caught up with the writes before, which is waited for
and reported); POST /clients/{id}/sessions, each a new session of a known client; and a mix of both, two wrk
processes at once with the connections split so that about 10% of the requests are writes (from the
read and write latencies of a short first mix), reporting the reads' and the writes' figures apart. Targets:
uncached /recommend >= 50% of /health's throughput with p99 <= 25 ms; write p99 <= 25 ms; reads' p99 in
the mix <= 25 ms. Then one round of the same with stored rankings off (every /recommend computed), for
reference. Writes results/serve.json and results/serve.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import uvloop

from bench import RESULTS, targets_table, write_results
from tests.e2e import conftest as e2e
from tests.e2e.conftest import Server, running_server

DEFAULT_ROOT = RESULTS / "tmp" / "serve"
# The default architecture; accuracy is not measured.
QUICK_TRAINING = ("optim.max_epochs=3", "ablations=false")
TARGET_RATIO, TARGET_RECOMMEND_P99_MS, TARGET_SCORE_P99_MS = 0.60, 25.0, 40.0
TARGET_UNCACHED_RATIO, TARGET_LIVE_P99_MS = 0.50, 25.0
WRITE_SHARE = 0.10  # of the mix's requests
CALIBRATION_SECONDS = 3.0  # of the first, short mix whose latencies set the read / write split
WRITE_KEY = "bench-write-key"
WARM_UP_MAX_SECONDS = 30.0
# Two worker processes each load torch and the artifacts: over a minute when other work shares the cores.
e2e.STARTUP_SECONDS = 300.0
Request = tuple[str, str, bytes | None]  # method, path, JSON body


@dataclass(frozen=True)
class Load:
    """What one load generator measured on one route."""

    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True)
class RouteResult:
    route: str
    requests: int
    errors: int
    seconds: float
    throughput_rps: float
    p50_ms: float
    p99_ms: float
    server_cpu_ms_per_request: float


def ensure_artifacts(root: Path) -> Path:
    """The default data set trained quickly under `root`, unless it is there already."""
    from training.generate import generate
    from training.pipeline import run_training

    artifacts = root / "artifacts"
    if not (artifacts / "current").exists():
        generate(root / "data", clients=2000, seed=42, preset="default")
        run_training(root / "data", artifacts, overrides=QUICK_TRAINING)
    return artifacts


def server_cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` and, recursively, of its children (the workers of a supervisor)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(server_cpu_seconds(int(child)) for child in children)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def hammer(
    url: str, requests: list[Request], *, seconds: float, connections: int, once: bool = False
) -> tuple[list[float], int]:
    """Closed loop over `connections` connections for `seconds`, or (`once`) until each request went once.

    One single-connection client per worker: one shared pool of 32 connections makes httpx itself the
    bottleneck (its pool serialises checkouts), which would measure the client, not the server.
    """
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker(client: httpx.AsyncClient, i: int) -> None:
        nonlocal errors
        while time.perf_counter() < deadline and not (once and i >= len(requests)):
            method, path, body = requests[i % len(requests)]
            i += connections
            sent = time.perf_counter()
            try:
                ok = (await client.request(method, path, content=body)).status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - sent)
            else:
                errors += 1

    async with contextlib.AsyncExitStack() as stack:
        limits, headers = httpx.Limits(max_connections=1), {"content-type": "application/json"}
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=url, limits=limits, headers=headers, timeout=30.0)
            )
            for _ in range(connections)
        ]
        await asyncio.gather(*(worker(client, i) for i, client in enumerate(clients)))
    return latencies, errors


def load_httpx(url: str, requests: list[Request], *, seconds: float, connections: int) -> Load:
    started = time.perf_counter()
    latencies, errors = uvloop.run(hammer(url, requests, seconds=seconds, connections=connections))
    return Load(
        requests=len(latencies),
        errors=errors,
        seconds=time.perf_counter() - started,
        p50_ms=1e3 * statistics.median(latencies),
        p99_ms=1e3 * percentile(latencies, 0.99),
    )


WRK_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests": %d, "errors": %d, "seconds": %f, "p50_us": %d, "p99_us": %d}\\n',
    summary.requests, e.connect + e.read + e.write + e.timeout + e.status, summary.duration / 1e6,
    latency:percentile(50), latency:percentile(99)))
end
"""
WRK_CYCLE = """
local bodies = {%s}
local reqs = {}
init = function(args)
  for i, r in ipairs(bodies) do
    reqs[i] = wrk.format(r[1], r[2], {["content-type"] = "application/json"}, r[3])
  end
end
local n = 0
request = function()
  n = n %% #reqs + 1
  return reqs[n]
end
"""
# Each request a new session (ID: the run's prefix and a counter) of the next client, two labels.
WRK_WRITES = """
local ids = {%s}
local labels = {%s}
local n = 0
request = function()
  n = n + 1
  local body = string.format('{"session_id": "%s-%%d", "date": "2026-11-30", "labels": ["%%s", "%%s"]}',
    n, labels[n %% #labels + 1], labels[(n * 7) %% #labels + 1])
  return wrk.format("POST", "/clients/" .. ids[n %% #ids + 1] .. "/sessions",
    {["content-type"] = "application/json", ["x-api-key"] = "%s"}, body)
end
"""


def lua_string(text: str) -> str:
    return "[==[" + text + "]==]"


def cycle_script(requests: list[Request]) -> str:
    """wrk's Lua cycling through `requests`."""
    entries = [
        f"{{{json.dumps(method)}, {json.dumps(path)}, {lua_string(body.decode()) if body else 'nil'}}}"
        for method, path, body in requests
    ]
    return WRK_CYCLE % ",\n".join(entries)


def writes_script(client_ids: list[int], labels: list[str], *, prefix: str) -> str:
    """wrk's Lua recording a new session per request, cycling through `client_ids`."""
    return WRK_WRITES % (
        ", ".join(map(str, client_ids)),
        ", ".join(json.dumps(label, ensure_ascii=False) for label in labels),
        prefix,
        WRITE_KEY,
    )


@contextlib.contextmanager
def started_wrk(url: str, script: str, *, seconds: float, connections: int) -> Iterator[Callable[[], Load]]:
    """wrk (one thread) running `script` plus the figures hook; yields a function that waits for it."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", encoding="utf-8") as file:
        file.write(script + WRK_DONE)
        file.flush()
        command = ["wrk", "-t1", f"-c{connections}", f"-d{round(seconds)}s", "-s", file.name, url]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        def finish() -> Load:
            out, err = process.communicate(timeout=seconds + 60)
            if process.returncode != 0:
                raise RuntimeError(f"wrk failed: {err}")
            figures = json.loads(out.strip().splitlines()[-1])
            return Load(
                requests=figures["requests"] - figures["errors"],
                errors=figures["errors"],
                seconds=figures["seconds"],
                p50_ms=figures["p50_us"] / 1e3,
                p99_ms=figures["p99_us"] / 1e3,
            )

        try:
            yield finish
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def run_wrk(url: str, script: str, *, seconds: float, connections: int) -> Load:
    with started_wrk(url, script, seconds=seconds, connections=connections) as finish:
        return finish()


def load_wrk(url: str, requests: list[Request], *, seconds: float, connections: int) -> Load:
    """wrk, one thread, cycling through `requests`; its Lua `done` hook prints the figures as JSON."""
    return run_wrk(url, cycle_script(requests), seconds=seconds, connections=connections)


LOADERS: dict[str, Callable[..., Load]] = {"httpx": load_httpx, "wrk": load_wrk}


def measure(
    loader: str, url: str, pid: int, route: str, requests: list[Request], *, workers: int, **load: Any
) -> RouteResult:
    for _ in range(3 * workers):
        warm_up = hammer(
            url, requests, seconds=WARM_UP_MAX_SECONDS, connections=load["connections"], once=True
        )
        uvloop.run(warm_up)
    cpu = server_cpu_seconds(pid)
    done = LOADERS[loader](url, requests, **load)
    return route_result(route, done, server_cpu_seconds(pid) - cpu)


def route_result(route: str, done: Load, cpu_seconds: float) -> RouteResult:
    return RouteResult(
        route=route,
        requests=done.requests,
        errors=done.errors,
        seconds=round(done.seconds, 2),
        throughput_rps=round(done.requests / done.seconds, 1),
        p50_ms=round(done.p50_ms, 2),
        p99_ms=round(done.p99_ms, 2),
        server_cpu_ms_per_request=round(1e3 * cpu_seconds / max(done.requests + done.errors, 1), 3),
    )


def all_client_ids(url: str, page: int = 1000) -> list[int]:
    """Every client ID the server knows, from GET /clients page by page."""
    ids: list[int] = []
    while True:
        found = httpx.get(f"{url}/clients", params={"limit": page, "offset": len(ids)}).json()["clients"]
        ids += [item["client_id"] for item in found]
        if len(found) < page:
            return ids


@contextlib.contextmanager
def environment(**variables: str) -> Iterator[None]:
    """`variables` set in this process's environment (which servers it starts inherit), then restored."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value


def live_run(
    artifacts: Path, *, seconds: float, rounds: int, connections: int, stored: bool = True
) -> dict[str, Any]:
    """The live-history figures of a 2-worker server with its response cache off and the write API on
    (and its stored rankings, unless `stored` is False): each route's best round, the mix's too (by its
    reads' throughput)."""
    log = RESULTS / "tmp" / "serve-live.log"
    variables = {"WDREC_RECOMMEND_CACHE_SIZE": "0", "WDREC_WRITE_API_KEY": WRITE_KEY}
    with (
        tempfile.TemporaryDirectory(prefix="serve-state-", dir=RESULTS / "tmp") as state,
        environment(**variables, WDREC_STATE_DIR=state, WDREC_STORED_RANKINGS=str(stored).lower()),
        running_server(artifacts, log, workers=2) as server,
    ):  # a database of its own: the sessions it records would change other runs' rankings
        start_refresh = refreshed(server.url)
        client_ids = all_client_ids(server.url)
        random.Random(0).shuffle(client_ids)
        labels = [x["name"] for g in httpx.get(f"{server.url}/labels").json()["groups"] for x in g["labels"]]
        reads: list[Request] = [("GET", f"/recommend/{client_id}?k=10", None) for client_id in client_ids]
        # Writes in another order: in the reads' own, the two cycles would lock in phase, and how often a read
        # finds a client just written would depend on where each started.
        written = random.Random(1).sample(client_ids, len(client_ids))
        uvloop.run(hammer(server.url, reads, seconds=WARM_UP_MAX_SECONDS, connections=connections, once=True))
        best: dict[str, RouteResult] = {}
        catch_up: list[float] = []
        stored_reads: dict[str, list[int]] = {}
        for number in range(rounds):
            figures = live_round(
                server,
                reads,
                written,
                labels,
                prefix=f"bench-{time.time_ns()}-{number}",
                seconds=seconds,
                connections=connections,
                catch_up=catch_up,
                stored_reads=stored_reads,
            )
            for route, result in figures.items():
                print(f"  live {route:<24} {result.throughput_rps:8.1f} req/s  p50 {result.p50_ms:7.2f} ms  "
                      f"p99 {result.p99_ms:7.2f} ms  errors {result.errors}")  # fmt: skip
            for route, result in figures.items():
                if route.startswith("mix"):
                    continue
                if route not in best or result.throughput_rps > best[route].throughput_rps:
                    best[route] = result
            mix_reads = best.get("mix: /recommend")
            if mix_reads is None or figures["mix: /recommend"].throughput_rps > mix_reads.throughput_rps:
                best["mix: /recommend"], best["mix: sessions"] = (
                    figures["mix: /recommend"],
                    figures["mix: sessions"],
                )
    refresh = {"start_seconds": start_refresh, "after_writes_seconds": catch_up, "stored_reads": stored_reads}
    return {**live_summary(best), "stored_rankings": stored, "refresh": refresh}


def metric(url: str, name: str) -> float:
    """The value of a metric without labels, or of one labelled sample (`name{...}`), 0 if absent."""
    text = httpx.get(f"{url}/metrics").text
    for line in text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[-1])
    return 0.0


def refreshed(url: str, timeout: float = 600.0) -> float:
    """Wait until no worker has stored rankings left to refresh; the seconds waited."""
    start = time.monotonic()
    while metric(url, "wdrec_rankings_pending") > 0:
        if time.monotonic() - start > timeout:
            raise TimeoutError("the stored rankings were not refreshed in time")
        time.sleep(0.05)
    return round(time.monotonic() - start, 2)


LOOKUP_RESULTS = ("hit", "waited", "miss")  # wdrec_stored_ranking_lookups_total's


def stored_lookups(url: str) -> list[float]:
    """GET /recommend's stored-ranking look-ups so far, per LOOKUP_RESULTS."""
    name = "wdrec_stored_ranking_lookups_total"
    return [metric(url, f'{name}{{result="{result}"}}') for result in LOOKUP_RESULTS]


def live_round(
    server: Server,
    reads: list[Request],
    written: list[int],
    labels: list[str],
    *,
    prefix: str,
    seconds: float,
    connections: int,
    catch_up: list[float],
    stored_reads: dict[str, list[int]],
) -> dict[str, RouteResult]:
    """One round: /health, uncached /recommend, session writes (to the clients `written`, in turn), then the
    mix. Appends to `catch_up` how long the stored rankings took to be current after the writes (the reads
    start then), and to `stored_reads` the stored-ranking look-ups of the uncached reads and of the mix."""
    url, pid = server.url, server.process.pid
    load = {"seconds": seconds, "connections": connections}
    figures: dict[str, RouteResult] = {}
    scripts = {
        "/health": cycle_script([("GET", "/health", None)]),
        "/recommend (uncached)": cycle_script(reads),
        "POST sessions": writes_script(written, labels, prefix=f"{prefix}-w"),
    }
    for route, script in scripts.items():
        lookups = stored_lookups(url)
        cpu = server_cpu_seconds(pid)
        done = run_wrk(url, script, **load)
        figures[route] = route_result(route, done, server_cpu_seconds(pid) - cpu)
        if route == "POST sessions":
            catch_up.append(refreshed(url))
        elif route.startswith("/recommend"):
            _count_lookups(stored_reads, route, lookups, stored_lookups(url))
    writers = writer_connections(
        figures["/recommend (uncached)"].p50_ms, figures["POST sessions"].p50_ms, connections
    )
    # Mixed, writes wait less and reads longer than alone (reads need the CPU, writes mostly the lock), so
    # the split made from the lone latencies overshoots: a short first mix gives the latencies to split by.
    mix = partial(run_mix, url, scripts["/recommend (uncached)"], written, labels, connections=connections)
    trial = mix(prefix=f"{prefix}-c", seconds=CALIBRATION_SECONDS, writers=writers)
    writers = writer_connections(trial["mix: /recommend"].p50_ms, trial["mix: sessions"].p50_ms, connections)
    refreshed(url)
    lookups = stored_lookups(url)
    cpu = server_cpu_seconds(pid)
    mixed = mix(prefix=f"{prefix}-m", seconds=seconds, writers=writers)
    cpu = server_cpu_seconds(pid) - cpu
    _count_lookups(stored_reads, "mix: /recommend", lookups, stored_lookups(url))
    total = sum(done.requests + done.errors for done in mixed.values())
    for route, done in mixed.items():
        # The mix's server CPU is shared out by requests: it cannot be told apart per route.
        figures[route] = route_result(route, done, cpu * (done.requests + done.errors) / max(total, 1))
    return figures


def _count_lookups(counts: dict[str, list[int]], route: str, before: list[float], after: list[float]) -> None:
    """Add a route's stored-ranking look-ups between `before` and `after` to `counts[route]`."""
    total = counts.setdefault(route, [0] * len(LOOKUP_RESULTS))
    for i, (start, end) in enumerate(zip(before, after, strict=True)):
        total[i] += int(end - start)


def writer_connections(read_ms: float, write_ms: float, connections: int) -> int:
    """The connections to give writers so that about WRITE_SHARE of a closed-loop mix's requests are writes,
    from the reads' and writes' latencies: a connection's share of requests is inversely proportional to its
    latency."""
    writers = WRITE_SHARE * write_ms / (WRITE_SHARE * write_ms + (1 - WRITE_SHARE) * read_ms)
    return min(max(round(connections * writers), 1), connections - 1)


def run_mix(
    url: str,
    reads_script: str,
    client_ids: list[int],
    labels: list[str],
    *,
    prefix: str,
    seconds: float,
    writers: int,
    connections: int,
) -> dict[str, Load]:
    """Reads and writes at once: two wrk processes, `writers` of the `connections` recording sessions."""
    with (
        started_wrk(url, reads_script, seconds=seconds, connections=connections - writers) as reading,
        started_wrk(
            url, writes_script(client_ids, labels, prefix=prefix), seconds=seconds, connections=writers
        ) as writing,
    ):
        return {"mix: /recommend": reading(), "mix: sessions": writing()}


def live_summary(best: dict[str, RouteResult]) -> dict[str, Any]:
    trivial, uncached = best["/health"], best["/recommend (uncached)"]
    writes, mix_reads, mix_writes = best["POST sessions"], best["mix: /recommend"], best["mix: sessions"]
    ratio = uncached.throughput_rps / trivial.throughput_rps
    share = mix_writes.requests / max(mix_writes.requests + mix_reads.requests, 1)
    return {
        "routes": {route: asdict(result) for route, result in best.items()},
        "uncached_recommend_vs_trivial_throughput": round(ratio, 3),
        "mix_write_share": round(share, 3),
        "targets": {
            f"uncached /recommend throughput >= {TARGET_UNCACHED_RATIO:.0%} of /health": ratio
            >= TARGET_UNCACHED_RATIO,
            f"uncached /recommend p99 <= {TARGET_LIVE_P99_MS:g} ms": uncached.p99_ms <= TARGET_LIVE_P99_MS,
            f"session write p99 <= {TARGET_LIVE_P99_MS:g} ms": writes.p99_ms <= TARGET_LIVE_P99_MS,
            f"reads' p99 in a {1 - WRITE_SHARE:.0%} / {WRITE_SHARE:.0%} mix <= {TARGET_LIVE_P99_MS:g} ms": (
                mix_reads.p99_ms <= TARGET_LIVE_P99_MS
            ),
            "no errors": all(r.errors == 0 for r in best.values()),
        },
    }


def build_requests(url: str, *, seed: int = 0, count: int = 1024) -> dict[str, list[Request]]:
    """Seeded requests of each route, over real client IDs and labels of the served model."""
    rng = random.Random(seed)
    clients = httpx.get(f"{url}/clients", params={"limit": 1000}).json()["clients"]
    labels = [x["name"] for g in httpx.get(f"{url}/labels").json()["groups"] for x in g["labels"]]
    recommend: list[Request] = [
        ("GET", f"/recommend/{rng.choice(clients)['client_id']}?k=10", None) for _ in range(count)
    ]
    score: list[Request] = []
    for _ in range(count):
        body: dict[str, Any] = {"basket": rng.sample(labels, rng.randint(1, 6)), "k": 10}
        body.update(gender=rng.choice(["F", "M"]), age=rng.choice([20, 30, 40, 50]))
        if rng.random() < 0.5:
            body["history"] = [rng.sample(labels, rng.randint(2, 6)) for _ in range(rng.randint(1, 9))]
        score.append(("POST", "/score", json.dumps(body, ensure_ascii=False).encode()))
    return {"/health": [("GET", "/health", None)], "/recommend": recommend, "/score": score}


def run(
    artifacts: Path,
    loaders: list[str],
    *,
    workers: list[int],
    seconds: float,
    rounds: int,
    connections: int,
    live_rounds: int,
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for count in workers:
        log = RESULTS / "tmp" / f"serve-{count}.log"
        with running_server(artifacts, log, workers=count) as server:
            requests = build_requests(server.url)
            model = httpx.get(f"{server.url}/model").json()
            load = {"workers": count, "seconds": seconds, "connections": connections}
            results[str(count)] = {
                loader: summary(best_rounds(loader, server, requests, rounds=rounds, **load))
                for loader in loaders
            }
    setup = {
        "connections": connections,
        "seconds_per_route": seconds,
        "rounds": rounds,
        "cpus": os.cpu_count(),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "model_version": model["version"],
        "n_labels": model["n_labels"],
        "n_clients": model["n_clients"],
        "hidden": model["config"]["model"]["hidden"],
    }
    live: dict[str, Any] = {}
    if live_rounds and "wrk" in loaders:
        load = {"seconds": seconds, "connections": connections}
        live["live"] = live_run(artifacts, rounds=live_rounds, **load)
        # The same without stored rankings, every /recommend computed: one round, for reference.
        live["live_computed"] = live_run(artifacts, rounds=1, stored=False, **load)
    setup["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    return {"setup": setup, "workers": results, **live}


def best_rounds(
    loader: str, server: Server, requests: dict[str, list[Request]], *, rounds: int, **load: Any
) -> dict[str, RouteResult]:
    """Each route's best round (by throughput) of `rounds`, routes alternating."""
    best: dict[str, RouteResult] = {}
    for _ in range(rounds):
        for route, batch in requests.items():
            r = measure(loader, server.url, server.process.pid, route, batch, **load)
            print(f"  {load['workers']} worker(s) {loader:<5} {route:<11} {r.throughput_rps:8.1f} req/s  "
                  f"p50 {r.p50_ms:7.2f} ms  p99 {r.p99_ms:7.2f} ms  "
                  f"server CPU {r.server_cpu_ms_per_request:.2f} ms/req  errors {r.errors}")  # fmt: skip
            if route not in best or r.throughput_rps > best[route].throughput_rps:
                best[route] = r
    return best


def summary(best: dict[str, RouteResult]) -> dict[str, Any]:
    trivial, recommend, score = best["/health"], best["/recommend"], best["/score"]
    ratio = recommend.throughput_rps / trivial.throughput_rps
    return {
        "routes": {route: asdict(result) for route, result in best.items()},
        "recommend_vs_trivial_throughput": round(ratio, 3),
        "score_vs_trivial_throughput": round(score.throughput_rps / trivial.throughput_rps, 3),
        "targets": {
            f"/recommend throughput >= {TARGET_RATIO:.0%} of /health": ratio >= TARGET_RATIO,
            f"/recommend p99 <= {TARGET_RECOMMEND_P99_MS:g} ms": recommend.p99_ms <= TARGET_RECOMMEND_P99_MS,
            f"/score p99 <= {TARGET_SCORE_P99_MS:g} ms": score.p99_ms <= TARGET_SCORE_P99_MS,
            "no errors": all(r.errors == 0 for r in best.values()),
        },
    }


def markdown(result: dict[str, Any]) -> str:
    setup = result["setup"]
    lines = [
        "# Serving benchmark (`bench/serve.py`)",
        "",
        f"`wdrec serve --workers N` (uvicorn, each worker binding the port with SO_REUSEPORT; torch 1 thread "
        f"per forward, scoring threads = cores per worker, concurrent requests micro-batched) over model "
        f"{setup['model_version']} "
        f"({setup['n_labels']} labels, {setup['n_clients']} clients, hidden {setup['hidden']}). Load on the "
        f"same {setup['cpus']} cores over {setup['connections']} keep-alive connections, closed loop, best "
        f"of {setup['rounds']} rounds of {setup['seconds_per_route']} s per route after warm-up passes (so "
        f"/recommend is served from its per-client cache; /score is never cached). 1-minute load average "
        f"at the end: {setup['load_average_1m_at_end']} (other work shares the machine).",
    ]
    for workers, by_loader in result["workers"].items():
        for loader, figures in by_loader.items():
            lines += [
                "",
                f"## {workers} worker process{'es' if workers != '1' else ''}, load from {loader}",
                "",
                *route_table(figures["routes"]),
                "",
                *targets_table(figures["targets"]),
            ]
    if "live" in result:
        lines += live_markdown(result["live"], setup)
    if "live_computed" in result:
        lines += live_markdown(result["live_computed"], setup)
    return "\n".join(lines) + "\n"


def route_table(routes: dict[str, Any]) -> list[str]:
    """Markdown rows of each route's figures, throughput also as a share of /health's."""
    trivial = routes["/health"]["throughput_rps"]
    return [
        "| route | req/s | vs /health | p50 ms | p99 ms | server CPU ms/req | errors |",
        "|---|---|---|---|---|---|---|",
    ] + [
        f"| {route} | {r['throughput_rps']:.0f} | {r['throughput_rps'] / trivial:.0%} "
        f"| {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['server_cpu_ms_per_request']:.2f} | {r['errors']} |"
        for route, r in routes.items()
    ]


def live_markdown(live: dict[str, Any], setup: dict[str, Any]) -> list[str]:
    routes, refresh = live["routes"], live["refresh"]
    if live["stored_rankings"]:
        title = "stored rankings on (the default)"
        how = (
            "GET /recommend answers from the client's stored ranking where it is current; each worker "
            "refreshes the rankings its writes made stale, off the request path, and a read that finds its "
            "client's stale waits for a refresh of that client, started at once. The uncached reads and the "
            "mix start once no ranking is left to refresh: "
            f"{refresh['start_seconds']:.1f} s after start-up, "
            + ", ".join(f"{seconds:.1f} s" for seconds in refresh["after_writes_seconds"])
            + " after each round's writes. Stored-ranking look-ups, current / stale and waited for the "
            "refresh it asked for / computed for the request: "
            + "; ".join(
                f"{route} {' / '.join(f'{n:,}' for n in counts)}"
                for route, counts in refresh["stored_reads"].items()
            )
            + "."
        )
    else:
        title = "stored rankings off (`WDREC_STORED_RANKINGS=false`), for reference"
        how = (
            "Every GET /recommend computed: the client's recorded sessions read from the database, its "
            "history vector, the forward pass."
        )
    return [
        "",
        f"## Live histories: response cache off, writes on, {title} (2 worker processes, load from wrk)",
        "",
        "`WDREC_RECOMMEND_CACHE_SIZE=0` and the write API on, SQLite in WAL mode with synchronous=FULL. "
        f"{how} /recommend cycles through all {setup['n_clients']} clients in a shuffled order, so each "
        "request is another client; each write records a new session of a known client, cycling through "
        "them in another shuffled order. The mix runs two wrk processes at once, their connections split so "
        "that "
        f"{live['mix_write_share']:.1%} of its requests were writes. Best of the rounds per route (the mix "
        "by its reads' throughput); ratios against /health measured in the same rounds, on the same "
        "server.",
        "",
        *route_table(routes),
        "",
        *targets_table(live["targets"]),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--artifacts", type=Path, default=None, help="artifacts root or version folder")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per route and round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds over the routes; each keeps its best")
    parser.add_argument("--connections", type=int, default=32, help="concurrent keep-alive connections")
    parser.add_argument("--loaders", default="httpx,wrk", help="comma-separated: httpx, wrk (if installed)")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker process counts to measure")
    parser.add_argument(
        "--live-rounds", type=int, default=3, help="rounds of the live-history runs (0: none; needs wrk)"
    )
    args = parser.parse_args()
    loaders = [name for name in args.loaders.split(",") if name != "wrk" or shutil.which("wrk")]
    RESULTS.joinpath("tmp").mkdir(parents=True, exist_ok=True)
    artifacts = args.artifacts or ensure_artifacts(DEFAULT_ROOT)
    workers = [int(count) for count in args.workers.split(",")]
    result = run(
        artifacts,
        loaders,
        workers=workers,
        seconds=args.seconds,
        rounds=args.rounds,
        connections=args.connections,
        live_rounds=args.live_rounds,
    )
    write_results("serve", result, markdown(result))


if __name__ == "__main__":
    main()
