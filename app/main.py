"""The FastAPI app: `create_app()` builds it (app/launch.py runs it with uvicorn: `wdrec serve`)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import torch
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
from app.core.config import Settings, get_settings, scoring_threads
from app.lifecycle import running
from app.recommender import Recommender
from app.served import ServedVersion

logger = logging.getLogger(__name__)

WEB_DIR = Path(__file__).parent / "web"
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
    # Routes are matched in order: the busiest (rankings, then session writes) first.
    app.include_router(recommend.router)
    if key_value(settings.write_api_key):
        app.include_router(clients.write_router)
    for module in (clients, catalog, health, metrics):
        app.include_router(module.router)
    if key_value(settings.admin_api_key):
        app.include_router(admin.router)
    app.add_api_route("/", _index, include_in_schema=False)
    app.mount("/web", StaticFiles(directory=WEB_DIR), name="web")
    install_openapi(app)
    return app
