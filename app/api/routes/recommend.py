"""Rankings: GET /recommend/{client_id} for a known client, POST /score for a custom basket."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Annotated
from weakref import WeakKeyDictionary

from fastapi import APIRouter, Path, Query, Response

from app.api.deps import RankerDep
from app.api.errors import error_responses
from app.errors import InvalidQueryError
from app.lru import LruCache
from app.products import MAX_PRODUCTS, RankedProduct
from app.recommender import Recommender, ScoredLabel
from app.schemas import PRODUCTS_DOC, ModelInfo, Recommendation, RecommendResponse, ScoreRequest, model_info

router = APIRouter(tags=["recommendations"])


@dataclass
class VersionResponses:
    """What a loaded version answers the same way every time: its model info, and the JSON body of each
    recent known client's GET /recommend (a pure function of version, client and query)."""

    info: ModelInfo
    bodies: LruCache[tuple[int, int, int, bool], bytes]  # client, k, products, exclude_bought_products


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
    products: list[list[RankedProduct]] | None = None,
) -> RecommendResponse:
    """The response for ranked labels, each with its products when `products` holds them."""
    info = version_responses(recommender).info
    return RecommendResponse(
        client_id=client_id,
        k=k,
        recommendations=[
            Recommendation.from_scored(item, None if products is None else products[i])
            for i, item in enumerate(items)
        ],
        model=info,
    )


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
    products: Annotated[int, Query(ge=0, le=MAX_PRODUCTS, description=PRODUCTS_DOC)] = 0,
    exclude_bought_products: Annotated[
        bool, Query(description="leave the client's own products out of the product lists")
    ] = False,
) -> Response:
    """Score every CLAC3 label for the client's most recent sessions and demographics; return the top k,
    each with up to `products` products ranked for the client."""
    recommender = ranker.recommender
    bodies = version_responses(recommender).bodies
    key = (client_id, k, products, exclude_bought_products)
    body = bodies.get(key)
    if body is None:
        recommender.check_k(k)
        # A client whose ranking is cached is answered on the event loop: no thread hop, no model call.
        entry = recommender.cached(client_id) or await ranker.scorer.top(
            recommender, partial(recommender.client_query, client_id)
        )
        items = recommender.ranked(entry, k)
        lists = (
            recommender.label_products(
                items, n=products, client_id=client_id, exclude_bought=exclude_bought_products
            )
            if products
            else None
        )
        response = ranking_response(recommender, items, client_id=client_id, k=k, products=lists)
        body = response.model_dump_json().encode()
        bodies.put(key, body)
    return Response(body, media_type="application/json")


@router.post(
    "/score",
    summary="Top-k labels for a custom basket, history or demographics",
    responses=error_responses(400, 409, 413, 422, 503),
)
async def score(request: ScoreRequest, ranker: RankerDep) -> RecommendResponse:
    """Score every label for a history whose newest session is the basket; demographics alone: cold start."""
    recommender, settings = ranker.recommender, ranker.settings
    _check_lengths(request, settings.max_basket_len, settings.max_history_len)
    query = partial(
        recommender.custom_query,
        basket=request.basket,
        history=request.history,
        gender=request.gender,
        age=request.age,
        k=request.k,
    )
    entry = await ranker.scorer.top(recommender, query)
    items = recommender.ranked(entry, request.k)
    lists = (
        recommender.label_products(items, n=request.products, gender=request.gender, age=request.age)
        if request.products
        else None
    )
    return ranking_response(recommender, items, client_id=None, k=request.k, products=lists)


def _check_lengths(request: ScoreRequest, max_session: int, max_history: int) -> None:
    if len(request.history) > max_history:
        raise InvalidQueryError(f"history holds more than {max_history} sessions")
    if any(len(session) > max_session for session in (*request.history, request.basket)):
        raise InvalidQueryError(f"a basket or session holds more than {max_session} labels")
