"""Rankings: GET /recommend/{client_id} for a known client, POST /score for a custom basket."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any
from weakref import WeakKeyDictionary

from fastapi import APIRouter, Path, Query, Response

from app.api.deps import RankerDep
from app.api.errors import error_responses
from app.errors import InvalidQueryError
from app.filters import Filters
from app.lru import LruCache
from app.products import MAX_PRODUCTS, RankedProduct
from app.recommender import Query as RankingQuery
from app.recommender import Recommender, ScoredLabel
from app.schemas import (
    FILTER_DOCS,
    MAX_QUERY_VALUES,
    PRODUCTS_DOC,
    Category,
    Label,
    ModelInfo,
    Recommendation,
    RecommendResponse,
    ScoreRequest,
    model_info,
)

router = APIRouter(tags=["recommendations"])


@dataclass
class VersionResponses:
    """What a loaded version answers the same way every time: its model info, and the JSON body of each
    recent known client's GET /recommend (a pure function of version, client and query)."""

    info: ModelInfo
    # client, k, filters, products, exclude_bought_products
    bodies: LruCache[tuple[int, int, Filters, int, bool], bytes]


_VERSIONS: WeakKeyDictionary[Recommender, VersionResponses] = WeakKeyDictionary()  # dropped with the version


def version_responses(recommender: Recommender) -> VersionResponses:
    responses = _VERSIONS.get(recommender)
    if responses is None:
        responses = _VERSIONS[recommender] = VersionResponses(
            model_info(recommender.metadata), LruCache(recommender.cache_size)
        )
    return responses


def ranking_response(
    recommender: Recommender,
    items: list[ScoredLabel],
    *,
    client_id: int | None,
    k: int,
    candidates: int,
    products: list[list[RankedProduct]] | None = None,
) -> RecommendResponse:
    """The response for ranked labels, each with its products when `products` holds them, saying so when
    the filters left fewer than k."""
    return RecommendResponse(
        client_id=client_id,
        k=k,
        recommendations=[
            Recommendation.from_scored(item, None if products is None else products[i])
            for i, item in enumerate(items)
        ],
        candidates=candidates,
        notice=None if len(items) == k else f"The filters leave {len(items)} of the {k} labels asked for",
        model=version_responses(recommender).info,
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
    )


def _names(description: str) -> Any:
    """A repeatable query parameter of names."""
    return Query(description=description, max_length=MAX_QUERY_VALUES)


@router.get(
    "/recommend/{client_id}",
    summary="Top-k labels for a known client",
    response_model=RecommendResponse,
    responses=error_responses(404, 409, 422, 503),
)
async def recommend(
    client_id: Annotated[int, Path(description="CLNT_ID of a client in the loaded table")],
    ranker: RankerDep,
    k: Annotated[int, Query(ge=1, description="how many labels, 1..min(max_k, label count)")] = 10,
    exclude_bought: Annotated[bool, Query(description=FILTER_DOCS["exclude_bought"])] = False,
    clac1: Annotated[list[Category] | None, _names(FILTER_DOCS["clac1"])] = None,
    exclude_clac1: Annotated[list[Category] | None, _names(FILTER_DOCS["exclude_clac1"])] = None,
    exclude: Annotated[list[Label] | None, _names(FILTER_DOCS["exclude"])] = None,
    products: Annotated[int, Query(ge=0, le=MAX_PRODUCTS, description=PRODUCTS_DOC)] = 0,
    exclude_bought_products: Annotated[
        bool, Query(description="leave the client's own products out of the product lists")
    ] = False,
) -> Response:
    """Score every CLAC3 label for the client's most recent sessions and demographics; leave out what the
    filters exclude; return the top k, each with up to `products` products ranked for the client."""
    recommender = ranker.recommender
    filters = Filters.of(
        exclude_bought=exclude_bought,
        clac1=clac1 or (),
        exclude_clac1=exclude_clac1 or (),
        exclude=exclude or (),
    )
    bodies = version_responses(recommender).bodies
    key = (client_id, k, filters, products, exclude_bought_products)
    body = bodies.get(key)
    if body is None:
        recommender.check_k(k)
        # A client whose ranking is cached is answered on the event loop: no thread hop, no model call.
        entry = recommender.cached(client_id, filters) or await ranker.scorer.top(
            recommender, partial(recommender.client_query, client_id, filters)
        )
        items = recommender.ranked(entry, k)
        lists = (
            recommender.label_products(
                items, n=products, client_id=client_id, exclude_bought=exclude_bought_products
            )
            if products
            else None
        )
        response = ranking_response(
            recommender, items, client_id=client_id, k=k, candidates=entry.candidates, products=lists
        )
        body = response.model_dump_json().encode()
        bodies.put(key, body)
    return Response(body, media_type="application/json")


@router.post(
    "/score",
    summary="Top-k labels for a custom basket, history or demographics",
    responses=error_responses(400, 409, 413, 422, 503),
)
async def score(request: ScoreRequest, ranker: RankerDep) -> RecommendResponse:
    """Score every label for a history whose newest session is the basket (demographics alone: cold start);
    leave out what the filters exclude; return the top k, each with up to `products` products."""
    recommender, settings = ranker.recommender, ranker.settings
    _check_lengths(request, settings.max_basket_len, settings.max_history_len)
    entry = await ranker.scorer.top(recommender, partial(score_query, recommender, request))
    items = recommender.ranked(entry, request.k)
    lists = (
        recommender.label_products(items, n=request.products, gender=request.gender, age=request.age)
        if request.products
        else None
    )
    return ranking_response(
        recommender, items, client_id=None, k=request.k, candidates=entry.candidates, products=lists
    )


def _check_lengths(request: ScoreRequest, max_session: int, max_history: int) -> None:
    if len(request.history) > max_history:
        raise InvalidQueryError(f"history holds more than {max_history} sessions")
    if any(len(session) > max_session for session in (*request.history, request.basket)):
        raise InvalidQueryError(f"a basket or session holds more than {max_session} labels")
