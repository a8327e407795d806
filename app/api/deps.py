"""Dependencies of the routes, as `Annotated` aliases.

They are `async def` because they only read app.state: FastAPI runs a plain `def` dependency on a worker
thread, a thread hop per dependency per request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.batching import BatchScorer
from app.core.config import Settings
from app.errors import NotReadyError
from app.recommender import Recommender


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_recommender(request: Request) -> Recommender:
    """The loaded recommender; 503 (NotReadyError) while none is loaded."""
    recommender: Recommender | None = request.app.state.recommender
    if recommender is None:
        raise NotReadyError()
    return recommender


async def get_scorer(request: Request) -> BatchScorer:
    scorer: BatchScorer = request.app.state.scorer
    return scorer


SettingsDep = Annotated[Settings, Depends(get_settings)]
RecommenderDep = Annotated[Recommender, Depends(get_recommender)]
ScorerDep = Annotated[BatchScorer, Depends(get_scorer)]
