"""The OpenAPI document, with examples computed from the loaded artifacts: real labels, clients and scores."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from app.api.query_model import query_parameters
from app.api.routes.catalog import labels_response, model_card
from app.api.routes.clients import client_detail, clients_page
from app.api.routes.recommend import ranking_response, score_query
from app.errors import (
    FilterConflictError,
    InvalidQueryError,
    ServiceError,
    UnknownClientError,
    UnknownLabelsError,
)
from app.explain import can_explain, explain_rankings, utc_today
from app.filters import NO_FILTERS, Filters
from app.recommender import Query as RankingQuery
from app.recommender import Recommender
from app.schemas import RecommendQuery, ScoreRequest
from app.served import ServedVersion

EXAMPLE_K = 3


@dataclass(frozen=True)
class Named:
    """Several named examples of one body, shown as `examples` instead of one `example`."""

    values: dict[str, Any]


def install_openapi(app: FastAPI) -> None:
    """Replace app.openapi by one that adds examples for the loaded model (cached per model version)."""
    cache: dict[str, dict[str, Any]] = {}

    def openapi() -> dict[str, Any]:
        served: ServedVersion | None = app.state.served
        key = served.version if served is not None else ""
        if key not in cache:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            _document_queries(schema)
            if served is not None:
                _add_examples(schema, served)
                _bound_k(schema, served.recommender.max_k)
                _bound_session(schema, served.recommender, app.state.settings.max_basket_len)
            cache.clear()
            cache[key] = schema
        return cache[key]

    app.openapi = openapi  # type: ignore[method-assign]


def _document_queries(schema: dict[str, Any]) -> None:
    """Add the parameters of the query GET /recommend reads as one model (app/api/query_model.py). Built with
    the document, not at import: FastAPI's first schema of a process costs ~160 ms, which start-up need not
    pay."""
    schema["paths"]["/recommend/{client_id}"]["get"]["parameters"] += query_parameters(RecommendQuery)


def _bound_k(schema: dict[str, Any], max_k: int) -> None:
    """k's range depends on the loaded vocabulary: state it, so that clients (and fuzzers) know it."""
    bounds = {"minimum": 1, "maximum": max_k}
    for param in schema["paths"]["/recommend/{client_id}"]["get"]["parameters"]:
        if param["name"] == "k":
            param["schema"].update(bounds)
    schema["components"]["schemas"]["ScoreRequest"]["properties"]["k"].update(bounds)


def _bound_session(schema: dict[str, Any], recommender: Recommender, max_len: int) -> None:
    """A recorded session's labels are the loaded vocabulary's, at most `max_len` of them (or products)."""
    properties = schema["components"]["schemas"].get("SessionIn", {}).get("properties", {})
    if not properties:  # the write routes are not mounted
        return
    properties["labels"]["items"]["enum"] = list(recommender.vocab.labels)
    for name in ("labels", "products"):
        properties[name]["maxItems"] = max_len


def _error(exc: ServiceError) -> dict[str, Any]:
    return {"error": {"code": exc.code, "message": exc.message, "details": exc.details}}


def _dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json")


def _add_examples(schema: dict[str, Any], served: ServedVersion) -> None:
    recommender = served.recommender
    client_id = recommender.clients(limit=1, offset=0)[0][0]
    profile = recommender.client(client_id)
    *earlier, newest = [[recommender.vocab.labels[i] for i in s.labels] for s in profile.sessions]
    request = ScoreRequest(
        basket=newest,
        history=earlier[-2:],
        gender="M" if profile.gender == "M" else "F",
        age=profile.age or 30,
        k=EXAMPLE_K,
    )
    filters = _example_filters(recommender, client_id)
    filtered = request.model_copy(
        update={"exclude_bought": True, "exclude_clac1": list(filters.exclude_clac1)}
    )
    explained = request.model_copy(update={"explain": True})
    labels = labels_response(recommender)
    labels.groups = [group.model_copy(update={"labels": group.labels[:3]}) for group in labels.groups[:2]]
    examples: dict[tuple[str, str], dict[str, Any]] = {
        ("/recommend/{client_id}", "get"): {
            "params": {"client_id": client_id, "k": EXAMPLE_K, **_params(filters)},
            "200": Named(
                {
                    "ranking": _client_ranking(served, client_id),
                    "filtered": _client_ranking(served, client_id, filters),
                    "explained": _client_ranking(served, client_id, explain=True),
                }
            ),
            "404": _error(UnknownClientError(0)),
            "422": Named(
                {
                    "k out of range": _error(
                        InvalidQueryError(f"k must be between 1 and {recommender.max_k}", details={"k": 0})
                    ),
                    "contradictory filters": _error(_conflict(recommender, filters)),
                }
            ),
        },
        ("/score", "post"): {
            "body": Named(
                {
                    "basket": request.model_dump(),
                    "filtered": filtered.model_dump(),
                    "explained": explained.model_dump(),
                }
            ),
            "200": Named(
                {
                    "basket": _custom_ranking(served, request),
                    "filtered": _custom_ranking(served, filtered),
                    "explained": _custom_ranking(served, explained),
                }
            ),
            "422": Named(
                {
                    "unknown label": _error(_unknown_label(recommender, newest[0])),
                    "contradictory filters": _error(_conflict(recommender, filters)),
                }
            ),
        },
        ("/labels", "get"): {"200": _dump(labels)},
        ("/clients", "get"): {
            "params": {"limit": EXAMPLE_K, "offset": 0},
            "200": _dump(clients_page(recommender, limit=EXAMPLE_K, offset=0)),
        },
        ("/clients/{client_id}", "get"): {
            "params": {"client_id": client_id},
            "200": _dump(client_detail(recommender, client_id)),
            "404": _error(UnknownClientError(0)),
        },
        ("/model", "get"): {"200": _dump(model_card(recommender))},
        ("/health", "get"): {"200": {"status": "ok"}},
        ("/ready", "get"): {"200": {"status": "ready", "version": recommender.version}},
    }
    for (path, method), example in examples.items():
        _apply(schema["paths"][path][method], example)


def _example_filters(recommender: Recommender, client_id: int) -> Filters:
    """A "new to you" ranking without the top category of the client's best label, nor its best new label."""
    today = utc_today()  # the date the route ranks as of by default
    best = recommender.recommend(client_id, 1, today=today)[0]
    new = recommender.recommend(client_id, 1, Filters(exclude_bought=True), today=today)
    return Filters.of(exclude_bought=True, exclude_clac1=[best.clac1], exclude=[item.label for item in new])


def _params(filters: Filters) -> dict[str, Any]:
    return {
        "exclude_bought": filters.exclude_bought,
        "exclude_clac1": list(filters.exclude_clac1),
        "exclude": list(filters.exclude),
    }


def _response(
    served: ServedVersion, query: RankingQuery, *, client_id: int | None, k: int, explain: bool
) -> Any:
    recommender = served.recommender
    entry = recommender.top([query])[0]
    items = recommender.ranked(entry, k)
    explanations = (
        explain_rankings(recommender, [query], [items], today=utc_today())[0]
        if explain and can_explain(recommender)  # a version exported before explanations: none shown
        else None
    )
    response = ranking_response(
        served, items, client_id=client_id, k=k, candidates=entry.candidates, explanations=explanations
    )
    return _dump(response)


def _client_ranking(
    served: ServedVersion, client_id: int, filters: Filters = NO_FILTERS, *, explain: bool = False
) -> Any:
    query = served.recommender.client_query(client_id, filters)
    return _response(served, query, client_id=client_id, k=EXAMPLE_K, explain=explain)


def _custom_ranking(served: ServedVersion, request: ScoreRequest) -> Any:
    query = score_query(served.recommender, request)
    return _response(served, query, client_id=None, k=request.k, explain=request.explain)


def _conflict(recommender: Recommender, filters: Filters) -> FilterConflictError:
    """The error of asking for one top category and excluding it at once."""
    both = Filters.of(clac1=filters.exclude_clac1, exclude_clac1=filters.exclude_clac1)
    try:
        recommender.label_filter(both)
    except FilterConflictError as exc:
        return exc
    raise AssertionError(f"{both} should conflict")


def _unknown_label(recommender: Recommender, label: str) -> UnknownLabelsError:
    """The error a typo of `label` gets, with the service's real suggestions."""
    typo = label[:-1] if len(label) > 1 and label[:-1] not in recommender.vocab.labels else label + "?"
    try:
        recommender.label_ids([typo])
    except UnknownLabelsError as exc:
        return exc
    raise AssertionError(f"{typo!r} should be unknown")


def _apply(operation: dict[str, Any], example: dict[str, Any]) -> None:
    for param in operation.get("parameters", []):
        if param["name"] in example.get("params", {}):
            param["example"] = example["params"][param["name"]]
    if "body" in example:
        _set_example(operation["requestBody"]["content"]["application/json"], example["body"])
    for status, response in operation["responses"].items():
        if status in example:
            _set_example(response["content"]["application/json"], example[status])


def _set_example(content: dict[str, Any], value: Any) -> None:
    if isinstance(value, Named):
        content["examples"] = {name: {"summary": name, "value": one} for name, one in value.values.items()}
    else:
        content["example"] = value
