"""The process lifecycle: open the database and load the served version at start-up, hot reload (one at a
time), SIGHUP, the rolling restart of several worker processes, and closing down.

A reload loads and verifies the version `current` points at now, off the event loop, then swaps
`app.state.served` in one assignment: requests already running finish on the version they started with,
later ones get the new one, none waits. A failed load changes nothing; the reason goes to the log and to
the caller. With several worker processes a worker cannot swap its siblings' models: it asks uvicorn's
supervisor (its parent) for a rolling restart instead, which starts a replacement for each worker in turn
and retires the old one only once the new one serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial

import anyio.to_thread
from fastapi import FastAPI

from app import metrics
from app.coalesced import CoalescedReader
from app.core.memory import freeze_long_lived
from app.live import ClientState
from app.rankings import RankingRefresher
from app.served import ServedVersion
from app.sighup import EARLY_SIGHUP
from app.store import open_store
from training.errors import WdrecError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Swap:
    """The outcome of a successful reload."""

    version: str  # now served
    previous: str  # served before


class ReloadError(Exception):
    """A reload that failed; the old version is still served."""

    def __init__(self, served: str, reason: str) -> None:
        super().__init__(f"reload failed, still serving {served}: {reason}")
        self.served, self.reason = served, reason


@contextlib.asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[None]:
    """The app's life: open the database, load the served version (unless create_app was given one),
    reload on SIGHUP; close the database at the end."""
    store = await anyio.to_thread.run_sync(open_store, app.state.settings)
    app.state.store = store
    app.state.states = CoalescedReader(
        lambda keys: store.read_async(store.states_of, keys), missing=ClientState(0, None)
    )
    app.state.refresher = None
    try:
        if app.state.served is None:
            app.state.served = await anyio.to_thread.run_sync(ServedVersion.load, app.state.settings)
        metrics.serving(app.state.served.version)
        freeze_long_lived()
        async with reload_on_sighup(app), refreshing_rankings(app):
            yield
        metrics.serving(None, previous=app.state.served.version)
    finally:
        store.close()


@contextlib.asynccontextmanager
async def refreshing_rankings(app: FastAPI) -> AsyncIterator[None]:
    """While the app runs, keep its stored rankings current (unless WDREC_STORED_RANKINGS is off)."""
    if not app.state.settings.stored_rankings:
        yield
        return
    refresher = RankingRefresher(app.state.store, lambda: app.state.served)
    task = asyncio.create_task(refresher.run())
    app.state.refresher = refresher
    try:
        yield
    finally:
        app.state.refresher = None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def reload_served(app: FastAPI) -> Swap:
    """Load, verify and swap in the newest artifact version; ReloadError (old one kept) if it is bad."""
    async with app.state.reload_lock:  # one reload at a time: two would load twice and race on the swap
        old: ServedVersion = app.state.served
        try:
            new = await anyio.to_thread.run_sync(partial(ServedVersion.load, app.state.settings))
        except (WdrecError, OSError) as exc:
            error = ReloadError(old.version, str(exc))
            logger.error("%s", error)
            raise error from exc
        app.state.served = new  # the one reference swap
        if app.state.refresher is not None:
            app.state.refresher.wake()
        metrics.serving(new.version, previous=old.version)
        freeze_long_lived()
    logger.info("reloaded: serving %s (was %s)", new.version, old.version)
    return Swap(version=new.version, previous=old.version)


def request_rolling_restart() -> None:
    """Ask uvicorn's supervisor (this worker's parent) to replace every worker, one at a time."""
    os.kill(os.getppid(), signal.SIGHUP)


async def _reload_logged(app: FastAPI) -> None:
    with contextlib.suppress(ReloadError):  # already logged; the old version keeps serving
        await reload_served(app)


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
    if installed and EARLY_SIGHUP.is_set():
        EARLY_SIGHUP.clear()
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
