"""The service's Prometheus metrics, and their exposition for GET /metrics.

One process: the metrics live in this module's registry. Several worker processes (app/workers.py): the
supervisor creates a folder for the run and names it in PROMETHEUS_MULTIPROC_DIR before it starts any
worker; prometheus-client then keeps every worker's values in memory-mapped files there, and whichever
worker answers GET /metrics sums the files of all of them (counters and histograms of retired workers
included, so totals never drop at a rolling restart). The supervisor removes a dead worker's live gauges
(`retire_worker`) and the folder when it exits.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

REGISTRY = CollectorRegistry(auto_describe=True)  # this process's metrics when it serves alone

REQUESTS = Counter(
    "wdrec_http_requests",
    "HTTP requests answered, by method, route template and status code",
    ["method", "route", "status"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "wdrec_http_request_duration_seconds",
    "Time from a request's arrival in the app to its last response byte, by method and route template",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
MODEL_VERSION = Gauge(
    "wdrec_model_version",
    "Worker processes serving each model version (1 per process; summed over live workers)",
    ["version"],
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
SESSIONS_WRITTEN = Counter(
    "wdrec_sessions_written",
    "Sessions recorded through POST /clients/{client_id}/sessions (201; repeats of a stored one not counted)",
    registry=REGISTRY,
)
CACHE_LOOKUPS = Counter(
    "wdrec_recommend_cache_lookups",
    "GET /recommend response-cache look-ups, by result (hit: the stored body was still current)",
    ["result"],
    registry=REGISTRY,
)
CACHE_HIT, CACHE_MISS = CACHE_LOOKUPS.labels("hit"), CACHE_LOOKUPS.labels("miss")
STORED_LOOKUPS = Counter(
    "wdrec_stored_ranking_lookups",
    "GET /recommend look-ups of the client's stored ranking, by result (hit: current, so nothing computed; "
    "waited: stale, answered by the refresh it waited for; miss: computed for the request)",
    ["result"],
    registry=REGISTRY,
)
STORED_HIT, STORED_WAITED, STORED_MISS = (STORED_LOOKUPS.labels(r) for r in ("hit", "waited", "miss"))
RANKINGS_STORED = Counter(
    "wdrec_rankings_stored",
    "Client rankings computed off the request path and stored (after a write, a reload, a new day, for a "
    "read that found one stale)",
    registry=REGISTRY,
)
RANKINGS_PENDING = Gauge(
    "wdrec_rankings_pending",
    "Clients whose stored ranking a worker is yet to refresh (summed over live workers)",
    multiprocess_mode="livesum",
    registry=REGISTRY,
)


def serving(version: str | None, previous: str | None = None) -> None:
    """Record that this process's app now serves `version` (None: nothing, as it stops) instead of
    `previous` (a count, so that several apps in one process, as in tests, each count once)."""
    if previous is not None:
        MODEL_VERSION.labels(previous).dec()
    if version is not None:
        MODEL_VERSION.labels(version).inc()


def exposition() -> tuple[bytes, str]:
    """The metrics in Prometheus' text format, summed over every worker of the run, and their media type."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


@contextmanager
def multiprocess_run() -> Iterator[None]:
    """A fresh metrics folder named in PROMETHEUS_MULTIPROC_DIR for the worker processes started inside;
    removed, with every worker's files, at the end."""
    folder = tempfile.mkdtemp(prefix="wdrec-metrics-")
    previous = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = folder
    try:
        yield
    finally:
        if previous is None:
            del os.environ[MULTIPROC_ENV]
        else:
            os.environ[MULTIPROC_ENV] = previous
        shutil.rmtree(folder, ignore_errors=True)


def retire_worker(pid: int | None) -> None:
    """Drop a dead worker's live gauges (its model version) from the sums; its counters stay counted."""
    if pid is not None and os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)
