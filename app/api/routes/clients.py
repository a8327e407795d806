"""Clients: the training data's clients and what was recorded for them since.

The read routes always exist; the write routes (`write_router`) only when WDREC_WRITE_API_KEY is set, each
answering only after its write is durable, then marking the client's stored ranking stale (app/rankings.py)
on the event loop. The read handlers that touch the database are plain `def` (FastAPI runs them on its
thread pool, off the event loop); the session write waits for its commit on the event loop
(`SessionStore.record_session_async`), the demographics write on a worker thread.
"""

from __future__ import annotations

import datetime as dt
from functools import partial
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Path, Query, Response

from app.api.deps import RecommenderDep, ServiceDep, WriterDep
from app.api.errors import error_responses
from app.errors import InvalidQueryError
from app.live import LiveClient, RecordedSession
from app.metrics import SESSIONS_WRITTEN
from app.recommender import Recommender
from app.schemas import (
    MAX_CLIENT_ID,
    ClientDetail,
    ClientsPage,
    ClientSummary,
    DemographicsIn,
    RecordedSessionOut,
    SessionIn,
    SessionLabel,
)
from app.store import NewSession

# The earliest time zone is UTC+14: a date is in the future only once it is tomorrow there.
EARLIEST_OFFSET = dt.timedelta(hours=14)

ClientId = Annotated[int, Path(ge=0, le=MAX_CLIENT_ID, description="CLNT_ID of the client")]

router = APIRouter(tags=["clients"])
write_router = APIRouter(tags=["clients"])  # each route takes `WriterDep`: the write key's check


def clients_page(recommender: Recommender, *, limit: int, offset: int) -> ClientsPage:
    rows = recommender.clients(limit=limit, offset=offset)
    return ClientsPage(
        total=recommender.n_clients,
        limit=limit,
        offset=offset,
        clients=[ClientSummary(client_id=cid, sessions=n) for cid, n in rows],
    )


def _labels(recommender: Recommender, names: tuple[str, ...] | list[str]) -> list[SessionLabel]:
    return [SessionLabel(label=name, clac1=recommender.clac1_of(name)) for name in names]


def session_out(recommender: Recommender, session: RecordedSession) -> RecordedSessionOut:
    return RecordedSessionOut(
        session_id=session.session_id,
        date=session.date,
        labels=_labels(recommender, session.labels),
        products=list(session.products) if session.products is not None else None,
        recorded_at=session.recorded_at,
    )


def client_detail(recommender: Recommender, client_id: int, live: LiveClient | None = None) -> ClientDetail:
    profile = recommender.client(client_id, live)
    names = recommender.vocab.labels
    return ClientDetail(
        client_id=client_id,
        gender=profile.gender,
        age=profile.age,
        in_training=profile.in_training,
        sessions=[_labels(recommender, [names[i] for i in session.labels]) for session in profile.sessions],
        recorded_sessions=[session_out(recommender, session) for session in profile.recorded],
    )


def new_session(recommender: Recommender, body: SessionIn, *, max_labels: int) -> NewSession:
    """The session to store, its labels checked (or mapped from its products); InvalidQueryError,
    UnknownLabelsError or UnknownProductsError (422) naming what is wrong."""
    given: list[str] | list[int] = body.labels if body.labels is not None else body.products or []
    if len(given) > max_labels:
        raise InvalidQueryError(f"a session holds more than {max_labels} labels or products")
    if body.date > (dt.datetime.now(dt.UTC) + EARLIEST_OFFSET).date():
        raise InvalidQueryError(f"date {body.date} is in the future", details={"date": str(body.date)})
    if body.labels is not None:
        recommender.label_ids(body.labels)
        labels = tuple(dict.fromkeys(body.labels))
    else:
        labels = recommender.product_labels(body.products or [])
    products = tuple(body.products) if body.products is not None else None
    return NewSession(body.session_id, body.date, labels, products)


@router.get(
    "/clients", summary="Known client IDs with their session counts", responses=error_responses(422, 503)
)
async def clients(
    recommender: RecommenderDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="page size")] = 50,
    offset: Annotated[int, Query(ge=0, description="rows to skip")] = 0,
) -> ClientsPage:
    """One page of the loaded client table (the training data's clients), in table order."""
    return clients_page(recommender, limit=limit, offset=offset)


@router.get(
    "/clients/{client_id}",
    summary="A client's demographics, training sessions and recorded sessions",
    responses=error_responses(404, 422, 503),
)
def client(client_id: ClientId, service: ServiceDep) -> ClientDetail:
    """The client's gender, age, kept training sessions and recorded sessions (each oldest first);
    404 if the client is neither in the training data nor recorded."""
    return client_detail(service.recommender, client_id, service.store.client(client_id))


@write_router.put(
    "/clients/{client_id}",
    summary="Set a client's gender and age",
    responses=error_responses(400, 401, 413, 422, 503),
)
async def set_demographics(client_id: ClientId, body: DemographicsIn, service: WriterDep) -> ClientDetail:
    """Record the client's gender and age, checked against the model's vocabulary; they override the
    training data's from the next request on (null: not set, the training data's holds). Answers once
    stored durably."""
    recommender, store = service.recommender, service.store
    recommender.demographic_codes(body.gender, body.age)
    await anyio.to_thread.run_sync(
        partial(store.set_demographics, client_id, gender=body.gender, age=body.age)
    )
    if service.refresher is not None:
        service.refresher.changed(client_id)
    return client_detail(recommender, client_id, await anyio.to_thread.run_sync(store.client, client_id))


@write_router.post(
    "/clients/{client_id}/sessions",
    summary="Record a client's session",
    status_code=201,
    response_model=RecordedSessionOut,
    responses={
        200: {"model": RecordedSessionOut, "description": "The same session was recorded before"},
        **error_responses(400, 401, 409, 413, 422, 503),
    },
)
async def record_session(client_id: ClientId, body: SessionIn, service: WriterDep) -> Response:
    """Record a session (labels, or PD_C products mapped to labels) of a client, known or new: 201 once it
    is durable, and the client's next /recommend, on any worker or replica, ranks with it. The same
    session ID and body again: 200 with the stored session; another body under that ID: 409."""
    recommender = service.recommender
    new = new_session(recommender, body, max_labels=service.settings.max_basket_len)
    stored, created = await service.store.record_session_async(client_id, new)
    if created:
        SESSIONS_WRITTEN.inc()
        if service.refresher is not None:
            service.refresher.changed(client_id)
    # Serialised here by pydantic in one call: FastAPI would validate the returned model again first.
    body_out = session_out(recommender, stored).model_dump_json()
    return Response(body_out, status_code=201 if created else 200, media_type="application/json")
