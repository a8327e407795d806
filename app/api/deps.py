"""Dependencies of the routes, as `Annotated` aliases.

They are `async def` because they only read app.state: FastAPI runs a plain `def` dependency on a worker
thread, a thread hop per dependency per request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security

from app.api.auth import WRITE_KEY, check_key
from app.batching import BatchScorer
from app.coalesced import CoalescedReader
from app.core.config import Settings
from app.errors import NotReadyError
from app.live import ClientState
from app.rankings import RankingRefresher
from app.recommender import Recommender
from app.served import ServedVersion
from app.store import SessionStore, StateKey


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
class Service:
    """What the routes that rank or record need, as one dependency: FastAPI's resolution of each dependency
    costs ~15-20 us, a twentieth of a cached GET /recommend's CPU."""

    served: ServedVersion
    scorer: BatchScorer
    settings: Settings
    store: SessionStore  # the recorded clients
    states: CoalescedReader[StateKey, ClientState]  # their revisions and stored rankings
    refresher: RankingRefresher | None  # None: stored rankings are off

    @property
    def recommender(self) -> Recommender:
        return self.served.recommender


async def get_service(request: Request) -> Service:
    """The served version with the app's scorer, settings and database; 503 while none is loaded."""
    state = request.app.state
    return Service(
        await get_served(request), state.scorer, state.settings, state.store, state.states, state.refresher
    )


async def get_writer(request: Request, key: Annotated[str | None, Security(WRITE_KEY)]) -> Service:
    """`get_service` for the write routes, once the X-API-Key header holds WDREC_WRITE_API_KEY (else 401,
    before any other check)."""
    check_key(request.app.state.settings.write_api_key, key)
    return await get_service(request)


ServedDep = Annotated[ServedVersion, Depends(get_served)]
RecommenderDep = Annotated[Recommender, Depends(get_recommender)]
ServiceDep = Annotated[Service, Depends(get_service)]
WriterDep = Annotated[Service, Depends(get_writer)]
