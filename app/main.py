"""The FastAPI app: `create_app()` builds it, `serve()` runs it with uvicorn (`wdrec serve`)."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import torch
import uvicorn
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from app.api.auth import key_value
from app.api.errors import install_error_handlers
from app.api.limits import BodyLimitMiddleware
from app.api.openapi import install_openapi
from app.api.request_metrics import RequestMetricsMiddleware
from app.api.routes import admin, catalog, clients, health, metrics, recommend
from app.batching import BatchScorer
from app.core.config import Settings, get_settings, load_settings, scoring_threads
from app.lifecycle import defer_early_sighup, open_store, running
from app.recommender import Recommender
from app.served import ServedVersion
from app.workers import DrainingHttpToolsProtocol, run_workers

logger = logging.getLogger(__name__)

WEB_DIR = Path(__file__).parent / "web"
GRACEFUL_SHUTDOWN_S = 30  # on SIGTERM, requests still running after this are cancelled
# A restarted worker must load and verify the artifacts within this, or the old one stays.
WORKER_START_S = 120
DESCRIPTION = (
    "Wide & Deep next-basket recommendations over L.POINT-style purchase logs: the model scores every "
    "CLAC3 sub-category for a client's recent sessions and demographics. The web page is at `/`."
)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # One intra-op thread per forward pass: parallelism comes from concurrent batches (BatchScorer),
    # and torch's default of one thread per core would oversubscribe the 2 cores under load.
    torch.set_num_threads(1)
    async with running(app):
        yield


async def _index() -> FileResponse:
    return FileResponse(WEB_DIR / "index.html")


def create_app(settings: Settings | None = None, *, recommender: Recommender | None = None) -> FastAPI:
    """Build the app; its lifespan loads `settings.artifacts_dir` unless a `recommender` is given."""
    settings = settings or get_settings()
    app = FastAPI(title="wdrec", version="0.1.0", description=DESCRIPTION, lifespan=_lifespan)
    app.state.settings = settings
    app.state.served = (
        ServedVersion.of(recommender, cache_size=settings.recommend_cache_size)
        if recommender is not None
        else None
    )
    app.state.scorer = BatchScorer(threads=scoring_threads(settings), max_batch=settings.max_batch)
    install_error_handlers(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
        )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestMetricsMiddleware)  # outermost: it times and counts 413s too
    for module in (recommend, clients, catalog, health, metrics):
        app.include_router(module.router)
    if key_value(settings.write_api_key):
        app.include_router(clients.write_router)
    if key_value(settings.admin_api_key):
        app.include_router(admin.router)
    app.add_api_route("/", _index, include_in_schema=False)
    app.mount("/web", StaticFiles(directory=WEB_DIR), name="web")
    install_openapi(app)
    return app


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
    logger.info("verifying the artifacts in %s", settings.artifacts_dir)
    served = ServedVersion.load(settings)
    open_store(settings).close()  # reachable, and migrated once before any worker starts
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_S,
        "http": DrainingHttpToolsProtocol,  # a shutdown answers keep-alive clients with Connection: close
    }
    if settings.workers == 1:
        uvicorn.run(create_app(settings, recommender=served.recommender), **common)
        return
    del served  # verified; each worker loads its own copy
    os.environ.update({f"WDREC_{name.upper()}": str(value) for name, value in overrides.items()})
    config = uvicorn.Config(
        "app.main:create_app",
        factory=True,
        workers=settings.workers,
        timeout_worker_healthcheck=WORKER_START_S,
        **common,
    )
    run_workers(config)
