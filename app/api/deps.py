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
from app.revisions import RevisionReader
from app.served import ServedVersion
from app.store import SessionStore


async def get_served(request: Request) -> ServedVersion:
    """The served version; 503 (NotReadyError) while none is loaded."""
    served: ServedVersion | None = request.app.state.served
    if served is None:
        raise NotReadyError()
    return served


async def get_recommender(request: Request) -> Recommender:
    """The served version's recommender; 503 while none is loaded."""
    return (await get_served(request)).recommender


@dataclass(frozen=True)
class Ranker:
    """What the ranking routes need, as one dependency: FastAPI's resolution of each dependency costs
    ~20 us, a tenth of a cached GET /recommend."""

    served: ServedVersion
    scorer: BatchScorer
    settings: Settings

    @property
    def recommender(self) -> Recommender:
        return self.served.recommender


async def get_ranker(request: Request) -> Ranker:
    """The served version with the app's scorer and settings; 503 while none is loaded."""
    state = request.app.state
    return Ranker(await get_served(request), state.scorer, state.settings)


async def get_settings_of(request: Request) -> Settings:
    """The app's settings (tests build apps with their own)."""
    settings: Settings = request.app.state.settings
    return settings


async def get_store(request: Request) -> SessionStore:
    """The database of recorded clients (opened by the lifespan)."""
    store: SessionStore = request.app.state.store
    return store


async def get_revisions(request: Request) -> RevisionReader:
    """The reader of clients' revisions in that database, for the response cache."""
    revisions: RevisionReader = request.app.state.revisions
    return revisions


ServedDep = Annotated[ServedVersion, Depends(get_served)]
RecommenderDep = Annotated[Recommender, Depends(get_recommender)]
RankerDep = Annotated[Ranker, Depends(get_ranker)]
SettingsDep = Annotated[Settings, Depends(get_settings_of)]
StoreDep = Annotated[SessionStore, Depends(get_store)]
RevisionsDep = Annotated[RevisionReader, Depends(get_revisions)]
