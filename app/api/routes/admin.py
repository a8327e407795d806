"""Hot reload of the artifacts: `POST /admin/reload` (API key) and SIGHUP.

A reload loads and verifies the version `current` points at now, off the event loop, then swaps
`app.state.recommender` in one assignment: requests already running finish on the version they started
with, later ones get the new one, none waits. A failed load changes nothing; the reason goes to the log and,
for the route, to the response. The route exists only when `WDREC_ADMIN_API_KEY` is set.

With several worker processes (`WDREC_WORKERS` > 1) a worker cannot swap its siblings' models: the route
sends SIGHUP to uvicorn's supervisor, which starts a replacement for each worker in turn and retires the old
one only once the new one serves (a replacement that fails to load leaves the old worker serving), and
answers 202 at once; /ready then shows the version each worker serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import threading
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from app.core.config import Settings
from app.core.memory import freeze_long_lived
from app.recommender import Recommender
from app.schemas import ErrorResponse
from training.errors import WdrecError

logger = logging.getLogger(__name__)


class ReloadResult(BaseModel):
    """The outcome of a successful reload."""

    version: str  # now served
    previous: str  # served before
    changed: bool  # False when `current` still pointed at the served version

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "version": "20261127T033117Z-d0b4d55c",
                    "previous": "20261126T101500Z-d0b4d55c",
                    "changed": True,
                }
            ]
        }
    }


class RestartResult(BaseModel):
    """A rolling restart of the worker processes was requested (202)."""

    restarting_workers: int
    serving: str  # the version this worker serves until it is replaced

    model_config = {
        "json_schema_extra": {"examples": [{"restarting_workers": 2, "serving": "20261126T101500Z-d0b4d55c"}]}
    }


class ReloadError(Exception):
    """A reload that failed; the old version is still served."""

    def __init__(self, served: str, reason: str) -> None:
        super().__init__(f"reload failed, still serving {served}: {reason}")
        self.served, self.reason = served, reason


def _loader(settings: Settings) -> partial[Recommender]:
    return partial(
        Recommender.load,
        settings.artifacts_dir,
        max_k=settings.max_k,
        cache_size=settings.recommend_cache_size,
    )


async def reload_recommender(app: FastAPI) -> ReloadResult:
    """Load, verify and swap in the newest artifact version; ReloadError (old one kept) if it is bad."""
    lock: asyncio.Lock = app.state.reload_lock
    async with lock:  # one reload at a time: two would load twice and race on the swap
        old: Recommender = app.state.recommender
        try:
            new = await anyio.to_thread.run_sync(_loader(app.state.settings))
        except (WdrecError, OSError) as exc:
            error = ReloadError(old.version, str(exc))
            logger.error("%s", error)
            raise error from exc
        app.state.recommender = new  # the one reference swap
        freeze_long_lived()
    logger.info("reloaded: serving %s (was %s)", new.version, old.version)
    return ReloadResult(version=new.version, previous=old.version, changed=new.version != old.version)


_EARLY_SIGHUP = threading.Event()  # a SIGHUP arrived before the app's event loop took the signal over


def defer_early_sighup() -> None:
    """From now until `reload_on_sighup` takes over, remember a SIGHUP instead of dying of it (the default
    action): the app then reloads once it runs, so a version switched during start-up is picked up."""
    signal.signal(signal.SIGHUP, lambda signum, frame: _EARLY_SIGHUP.set())


async def _reload_logged(app: FastAPI) -> None:
    with contextlib.suppress(ReloadError):  # already logged; the old version keeps serving
        await reload_recommender(app)


@contextlib.asynccontextmanager
async def reload_on_sighup(app: FastAPI) -> AsyncIterator[None]:
    """While the app runs, SIGHUP reloads the artifacts (where the loop can take signals)."""
    app.state.reload_lock = asyncio.Lock()
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    def on_sighup() -> None:
        task = loop.create_task(_reload_logged(app))
        tasks.add(task)  # keep a reference until done: the loop holds tasks weakly
        task.add_done_callback(tasks.discard)

    installed = _add_sighup_handler(loop, on_sighup)
    if installed and _EARLY_SIGHUP.is_set():
        _EARLY_SIGHUP.clear()
        logger.info("SIGHUP during start-up: reloading")
        on_sighup()
    try:
        yield
    finally:
        if installed:
            loop.remove_signal_handler(signal.SIGHUP)


def _add_sighup_handler(loop: asyncio.AbstractEventLoop, handler: Callable[[], None]) -> bool:
    try:
        loop.add_signal_handler(signal.SIGHUP, handler)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread (TestClient), or no POSIX
        logger.debug("SIGHUP reload not available in this event loop")
        return False
    return True


def api_key(settings: Settings) -> str:
    """The admin API key; empty when none is set (the reload route is then not mounted)."""
    return settings.admin_api_key.get_secret_value() if settings.admin_api_key is not None else ""


router = APIRouter(prefix="/admin", tags=["admin"])
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing or wrong API key (header X-API-Key)"},
    202: {"model": RestartResult, "description": "Several workers: their rolling restart was requested"},
    409: {"model": ErrorResponse, "description": "The new version is bad; the old one is still served"},
    413: {"model": ErrorResponse, "description": "Request body too large"},
}


@router.post(
    "/reload", summary="Reload the newest artifact version", response_model=ReloadResult, responses=ERRORS
)
async def reload(
    request: Request, x_api_key: Annotated[str | None, Header()] = None
) -> ReloadResult | JSONResponse:
    """Load and verify `current` again and swap it in; on failure keep serving the old version (409, why).
    With several workers: request their rolling restart (202)."""
    settings: Settings = request.app.state.settings
    expected = api_key(settings)
    if not expected or not secrets.compare_digest((x_api_key or "").encode(), expected.encode()):
        raise HTTPException(401, "Missing or wrong API key (header X-API-Key)")
    if settings.workers > 1:
        os.kill(os.getppid(), signal.SIGHUP)  # the supervisor: see the module docstring
        served = RestartResult(
            restarting_workers=settings.workers, serving=request.app.state.recommender.version
        )
        return JSONResponse(served.model_dump(), status_code=202)
    try:
        return await reload_recommender(request.app)
    except ReloadError as exc:
        raise HTTPException(409, str(exc)) from exc
