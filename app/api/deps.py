"""Dependencies of the routes, as `Annotated` aliases.

They are `async def` because they only read app.state: FastAPI runs a plain `def` dependency on a worker
thread, a thread hop per dependency per request.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Annotated, ParamSpec, TypeVar

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import Depends, Request

from app.core.config import Settings
from app.errors import NotReadyError
from app.recommender import Recommender

P = ParamSpec("P")
T = TypeVar("T")


class InferencePool:
    """Runs blocking scoring calls on worker threads, at most `threads` at a time."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._limiter: CapacityLimiter | None = None  # created on first use: it needs a running event loop

    async def run(self, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        if self._limiter is None:
            self._limiter = CapacityLimiter(self.threads)
        return await anyio.to_thread.run_sync(partial(func, *args, **kwargs), limiter=self._limiter)


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_recommender(request: Request) -> Recommender:
    """The loaded recommender; 503 (NotReadyError) while none is loaded."""
    recommender: Recommender | None = request.app.state.recommender
    if recommender is None:
        raise NotReadyError()
    return recommender


async def get_inference_pool(request: Request) -> InferencePool:
    pool: InferencePool = request.app.state.inference_pool
    return pool


SettingsDep = Annotated[Settings, Depends(get_settings)]
RecommenderDep = Annotated[Recommender, Depends(get_recommender)]
InferenceDep = Annotated[InferencePool, Depends(get_inference_pool)]
