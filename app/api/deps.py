"""Dependencies of the routes, as `Annotated` aliases.

They are `async def` because they only read app.state: FastAPI runs a plain `def` dependency on a worker
thread, a thread hop per dependency per request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from app.batching import BatchScorer
from app.core.config import Settings
from app.errors import NotReadyError
from app.recommender import Recommender


async def get_recommender(request: Request) -> Recommender:
    """The loaded recommender; 503 (NotReadyError) while none is loaded."""
    recommender: Recommender | None = request.app.state.recommender
    if recommender is None:
        raise NotReadyError()
    return recommender


@dataclass(frozen=True)
class Ranker:
    """What the ranking routes need, as one dependency: FastAPI's resolution of each dependency costs
    ~20 us, a tenth of a cached GET /recommend."""

    recommender: Recommender
    scorer: BatchScorer
    settings: Settings


async def get_ranker(request: Request) -> Ranker:
    """The loaded recommender with the app's scorer and settings; 503 while none is loaded."""
    state = request.app.state
    return Ranker(await get_recommender(request), state.scorer, state.settings)


RecommenderDep = Annotated[Recommender, Depends(get_recommender)]
RankerDep = Annotated[Ranker, Depends(get_ranker)]
