"""`wdrec serve`: check the artifacts and the database, then run uvicorn, in this process with one worker,
else as the supervisor of worker processes.

A supervisor never imports torch: it checks the artifacts in a child process, so it stays a few tens of MB
beside workers that each hold a model (it held its own copy of torch and the model, ~450 MB, before).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import uvicorn

from app.core.config import Settings, load_settings
from app.core.memory import limit_malloc_arenas
from app.sighup import defer_early_sighup
from app.store import open_store
from app.workers import DrainingHttpToolsProtocol, run_workers

logger = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_S = 30  # on SIGTERM, requests still running after this are cancelled
# A restarted worker must load and verify the artifacts within this, or the old one stays.
WORKER_START_S = 120


def serve(
    *,
    artifacts_dir: Path | None = None,
    host: str | None = None,
    port: int | None = None,
    workers: int | None = None,
) -> None:
    """Load and verify the artifacts and open (migrate) the database, then serve with uvicorn;
    ArtifactError naming the file, or DatabaseError naming the database, if either is bad.

    Checking both before uvicorn starts makes a bad artifact set or an unreachable database one clear error
    line (the CLI's exit status 2) instead of a lifespan traceback. With several workers, each worker
    process builds its own app from the environment, so the overrides are passed on as WDREC_* variables;
    each serves a listening socket of its own that this process keeps (app/workers.py); SIGHUP to this
    process then restarts the workers one at a time, each loading `current` anew, dropping no connection.
    """
    defer_early_sighup()
    overrides: dict[str, Any] = {
        "artifacts_dir": artifacts_dir,
        "host": host,
        "port": port,
        "workers": workers,
    }
    overrides = {name: value for name, value in overrides.items() if value is not None}
    settings = load_settings(**overrides)
    limit_malloc_arenas(settings.malloc_arenas)  # before any thread; workers inherit it through the env
    logger.info("verifying the artifacts in %s", settings.artifacts_dir)
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "access_log": settings.access_log,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_S,
        "http": DrainingHttpToolsProtocol,  # a shutdown answers keep-alive clients with Connection: close
    }
    if settings.workers == 1:
        from app.main import create_app
        from app.served import ServedVersion

        served = ServedVersion.load(settings)
        open_store(settings).close()  # reachable and migrated before uvicorn starts
        uvicorn.run(create_app(settings, recommender=served.recommender), **common)
        return
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as child:
        child.submit(_load_version, settings).result()  # the child's ArtifactError is raised here
    open_store(settings).close()  # reachable, and migrated once before any worker starts
    os.environ.update({f"WDREC_{name.upper()}": str(value) for name, value in overrides.items()})
    config = uvicorn.Config(
        "app.main:create_app",
        factory=True,
        workers=settings.workers,
        timeout_worker_healthcheck=WORKER_START_S,
        **common,
    )
    run_workers(config)


def _load_version(settings: Settings) -> None:
    """Load and verify the served version (in a child process: nothing of it stays in the supervisor)."""
    from app.served import ServedVersion

    ServedVersion.load(settings)
