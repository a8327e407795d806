"""Rankings: GET /recommend/{client_id} for a known client, POST /score for a custom basket."""

from __future__ import annotations

from functools import partial
from typing import Annotated
from weakref import WeakKeyDictionary

from fastapi import APIRouter, Path, Query

from app.api.deps import RecommenderDep, ScorerDep, SettingsDep
from app.api.errors import error_responses
from app.errors import InvalidQueryError
from app.recommender import Recommender, ScoredLabel
from app.schemas import ModelInfo, Recommendation, RecommendResponse, ScoreRequest, model_info

router = APIRouter(tags=["recommendations"])


_MODEL_INFO: WeakKeyDictionary[Recommender, ModelInfo] = WeakKeyDictionary()  # one per loaded version


def ranking_response(
    recommender: Recommender, items: list[ScoredLabel], *, client_id: int | None, k: int
) -> RecommendResponse:
    info = _MODEL_INFO.get(recommender)
    if info is None:
        info = _MODEL_INFO[recommender] = model_info(recommender.metadata)
    return RecommendResponse(
        client_id=client_id,
        k=k,
        recommendations=[Recommendation.from_scored(item) for item in items],
        model=info,
    )


@router.get(
    "/recommend/{client_id}",
    summary="Top-k labels for a known client",
    responses=error_responses(404, 422, 503),
)
async def recommend(
    client_id: Annotated[int, Path(description="CLNT_ID of a client in the loaded table")],
    recommender: RecommenderDep,
    scorer: ScorerDep,
    k: Annotated[int, Query(ge=1, description="how many labels, 1..min(max_k, label count)")] = 10,
) -> RecommendResponse:
    """Score every CLAC3 label for the client's most recent sessions and demographics; return the top k."""
    recommender.check_k(k)
    # A cached client is answered on the event loop: no thread hop for what needs no model call.
    entry = recommender.cached(client_id) or await scorer.top(
        recommender, partial(recommender.client_query, client_id)
    )
    return ranking_response(recommender, recommender.ranked(entry, k), client_id=client_id, k=k)


@router.post(
    "/score",
    summary="Top-k labels for a custom basket, history or demographics",
    responses=error_responses(400, 413, 422, 503),
)
async def score(
    request: ScoreRequest, recommender: RecommenderDep, scorer: ScorerDep, settings: SettingsDep
) -> RecommendResponse:
    """Score every label for a history whose newest session is the basket; demographics alone: cold start."""
    _check_lengths(request, settings.max_basket_len, settings.max_history_len)
    query = partial(
        recommender.custom_query,
        basket=request.basket,
        history=request.history,
        gender=request.gender,
        age=request.age,
        k=request.k,
    )
    entry = await scorer.top(recommender, query)
    items = recommender.ranked(entry, request.k)
    return ranking_response(recommender, items, client_id=None, k=request.k)


def _check_lengths(request: ScoreRequest, max_session: int, max_history: int) -> None:
    if len(request.history) > max_history:
        raise InvalidQueryError(f"history holds more than {max_history} sessions")
    if any(len(session) > max_session for session in (*request.history, request.basket)):
        raise InvalidQueryError(f"a basket or session holds more than {max_session} labels")
