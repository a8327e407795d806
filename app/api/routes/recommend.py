"""Rankings: GET /recommend/{client_id} for a client's current history, POST /score for a custom basket.

A client's history is the training data's sessions plus those recorded since; the database's revision of
the client decides whether the served version's cached body is still current (app/served.py), so a read
sees every write acknowledged before it, whichever worker or replica took the write.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from functools import partial
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Depends, Response

from app.api.deps import ServiceDep
from app.api.errors import error_responses
from app.api.query_model import read_query
from app.api.routes.clients import ClientId
from app.errors import InvalidQueryError
from app.explain import LabelExplanation, explain_rankings, utc_today
from app.filters import Filters
from app.metrics import STORED_HIT, STORED_MISS, STORED_WAITED
from app.products import RankedProduct
from app.recommender import Query as RankingQuery
from app.recommender import Recommender, ScoredLabel
from app.schemas import Recommendation, RecommendQuery, RecommendResponse, ScoreRequest
from app.served import ServedVersion

router = APIRouter(tags=["recommendations"])


def ranking_response(
    served: ServedVersion,
    items: list[ScoredLabel],
    *,
    client_id: int | None,
    k: int,
    candidates: int,
    products: list[list[RankedProduct]] | None = None,
    explanations: list[LabelExplanation] | None = None,
    as_of: dt.date | None = None,
) -> RecommendResponse:
    """The response for ranked labels, each with its products and its explanation when asked for, saying
    so when the filters left fewer than k."""
    return RecommendResponse(
        client_id=client_id,
        k=k,
        recommendations=[
            Recommendation.from_scored(
                item,
                None if products is None else products[i],
                None if explanations is None else explanations[i],
            )
            for i, item in enumerate(items)
        ],
        candidates=candidates,
        notice=None if len(items) == k else f"The filters leave {len(items)} of the {k} labels asked for",
        as_of=as_of,
        model=served.info,
    )


def score_query(recommender: Recommender, request: ScoreRequest) -> RankingQuery:
    """The query of a POST /score body (raises the ServiceError of an unusable one)."""
    return recommender.custom_query(
        basket=request.basket,
        history=request.history,
        gender=request.gender,
        age=request.age,
        k=request.k,
        filters=request.filters(),
        dates=request.dates,
        today=request.date,
    )


async def explained(
    recommender: Recommender,
    make_query: Callable[[], RankingQuery],
    items: Sequence[ScoredLabel],
    today: dt.date,
) -> list[LabelExplanation]:
    """The explanations of a query's ranked labels as of `today` (on a worker thread: a forward pass)."""

    def run() -> list[LabelExplanation]:
        return explain_rankings(recommender, [make_query()], [items], today=today)[0]

    return await anyio.to_thread.run_sync(run)


@router.get(
    "/recommend/{client_id}",
    summary="Top-k labels for a client, from its training and recorded sessions",
    response_model=RecommendResponse,
    responses=error_responses(404, 409, 422, 503),
)
async def recommend(
    client_id: ClientId,
    service: ServiceDep,
    query: Annotated[RecommendQuery, Depends(read_query(RecommendQuery))],
) -> Response:
    """Score every CLAC3 label for the client's most recent sessions (training data, then recorded) and
    demographics; leave out what the filters exclude; return the top k, each with up to `products` products
    ranked for the client and, with `explain`, why. 404 if the client is neither in the training data nor
    recorded."""
    served = service.served
    k, products, explain = query.k, query.products, query.explain
    filters = Filters.of(
        exclude_bought=query.exclude_bought,
        clac1=query.clac1 or (),
        exclude_clac1=query.exclude_clac1 or (),
        exclude=query.exclude or (),
    )
    today = query.date or utc_today()
    # An explanation's "last bought N days ago" counts to the reference date, part of the key.
    key = (client_id, k, filters, products, query.exclude_bought_products, explain, today)
    body = None
    # A stored ranking holds labels and scores: products and explanations are computed with the history.
    refresher = service.refresher if not products and not explain else None
    state = None
    if served.caching:  # the client's revision decides whether a cached body is current
        state = await service.states.read((client_id, None, today))
        body = served.cached_body(key, state.revision)
    waited = False
    if body is None and refresher is not None:  # the client's revision and its current ranking: one read
        state = await service.states.read((client_id, served.version, today))
        # Stale: an express refresh of this client, waited for (one neither trained on nor recorded has none).
        if state.ranking is None and (state.revision or served.recommender.knows(client_id)):
            refreshed = await refresher.current(client_id, served.version, today, state.revision)
            state, waited = refreshed or state, refreshed is not None
    if body is None:
        recommender = served.recommender
        recommender.check_k(k)
        if state is not None and state.ranking is not None:
            (STORED_WAITED if waited else STORED_HIT).inc()
            entry, live, revision = recommender.stored_top(state.ranking, filters, k), None, state.revision
        else:
            if refresher is not None:
                STORED_MISS.inc()
            entry, live = await service.scorer.client(recommender, service.store, client_id, filters, today)
            revision = live.revision if live is not None else 0  # what the ranking was computed at
        items = recommender.ranked(entry, k)
        lists = (
            recommender.label_products(
                items,
                n=products,
                client_id=client_id,
                live=live,
                exclude_bought=query.exclude_bought_products,
            )
            if products
            else None
        )
        response = ranking_response(
            served,
            items,
            client_id=client_id,
            k=k,
            candidates=entry.candidates,
            products=lists,
            explanations=(
                await explained(
                    recommender,
                    partial(recommender.client_query, client_id, filters, live, today),
                    items,
                    today,
                )
                if explain
                else None
            ),
            as_of=today,
        )
        body = response.model_dump_json().encode()
        if served.caching:
            served.keep_body(key, revision, body)
    return Response(body, media_type="application/json")


@router.post(
    "/score",
    summary="Top-k labels for a custom basket, history or demographics",
    responses=error_responses(400, 409, 413, 422, 503),
)
async def score(request: ScoreRequest, service: ServiceDep) -> RecommendResponse:
    """Score every label for a history whose newest session is the basket (demographics alone: cold start);
    leave out what the filters exclude; return the top k, each with up to `products` products and, with
    `explain`, why."""
    recommender, settings = service.recommender, service.settings
    _check_lengths(request, settings.max_basket_len, settings.max_history_len)
    query = partial(score_query, recommender, request)
    entry = await service.scorer.top(recommender, query)
    items = recommender.ranked(entry, request.k)
    as_of = request.date or (max(request.dates) if request.dates else None)
    lists = (
        recommender.label_products(items, n=request.products, gender=request.gender, age=request.age)
        if request.products
        else None
    )
    return ranking_response(
        service.served,
        items,
        client_id=None,
        k=request.k,
        candidates=entry.candidates,
        products=lists,
        explanations=await explained(recommender, query, items, as_of or utc_today())
        if request.explain
        else None,
        as_of=as_of,
    )


def _check_lengths(request: ScoreRequest, max_session: int, max_history: int) -> None:
    if len(request.history) > max_history:
        raise InvalidQueryError(f"history holds more than {max_history} sessions")
    if any(len(session) > max_session for session in (*request.history, request.basket)):
        raise InvalidQueryError(f"a basket or session holds more than {max_session} labels")
