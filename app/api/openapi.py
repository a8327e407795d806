"""The OpenAPI document, with examples computed from the loaded artifacts: real labels, clients and scores."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from app.api.routes.catalog import client_detail, clients_page, labels_response, model_card
from app.api.routes.recommend import ranking_response
from app.errors import InvalidQueryError, ServiceError, UnknownClientError, UnknownLabelsError
from app.recommender import Recommender
from app.schemas import ScoreRequest

EXAMPLE_K = 3


def install_openapi(app: FastAPI) -> None:
    """Replace app.openapi by one that adds examples for the loaded model (cached per model version)."""
    cache: dict[str, dict[str, Any]] = {}

    def openapi() -> dict[str, Any]:
        recommender: Recommender | None = app.state.recommender
        key = recommender.version if recommender is not None else ""
        if key not in cache:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            if recommender is not None:
                _add_examples(schema, recommender)
                _bound_k(schema, recommender.max_k)
            cache.clear()
            cache[key] = schema
        return cache[key]

    app.openapi = openapi  # type: ignore[method-assign]


def _bound_k(schema: dict[str, Any], max_k: int) -> None:
    """k's range depends on the loaded vocabulary: state it, so that clients (and fuzzers) know it."""
    bounds = {"minimum": 1, "maximum": max_k}
    for param in schema["paths"]["/recommend/{client_id}"]["get"]["parameters"]:
        if param["name"] == "k":
            param["schema"].update(bounds)
    schema["components"]["schemas"]["ScoreRequest"]["properties"]["k"].update(bounds)


def _error(exc: ServiceError) -> dict[str, Any]:
    return {"error": {"code": exc.code, "message": exc.message, "details": exc.details}}


def _dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json")


def _add_examples(schema: dict[str, Any], recommender: Recommender) -> None:
    client_id = recommender.clients(limit=1, offset=0)[0][0]
    profile = recommender.client(client_id)
    *earlier, newest = [[recommender.vocab.labels[i] for i in s] for s in profile.sessions]
    request = ScoreRequest(
        basket=newest,
        history=earlier[-2:],
        gender="M" if profile.gender == "M" else "F",
        age=profile.age or 30,
        k=EXAMPLE_K,
    )
    query = recommender.custom_query(
        basket=request.basket, history=request.history, gender=request.gender, age=request.age, k=request.k
    )
    scored = recommender.rank(query)
    labels = labels_response(recommender)
    labels.groups = [group.model_copy(update={"labels": group.labels[:3]}) for group in labels.groups[:2]]
    recommendation = ranking_response(
        recommender, recommender.recommend(client_id, EXAMPLE_K), client_id=client_id, k=EXAMPLE_K
    )
    examples: dict[tuple[str, str], dict[str, Any]] = {
        ("/recommend/{client_id}", "get"): {
            "params": {"client_id": client_id, "k": EXAMPLE_K},
            "200": _dump(recommendation),
            "404": _error(UnknownClientError(0)),
            "422": _error(
                InvalidQueryError(f"k must be between 1 and {recommender.max_k}", details={"k": 0})
            ),
        },
        ("/score", "post"): {
            "body": request.model_dump(),
            "200": _dump(ranking_response(recommender, scored, client_id=None, k=EXAMPLE_K)),
            "422": _error(_unknown_label(recommender, newest[0])),
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
        operation["requestBody"]["content"]["application/json"]["example"] = example["body"]
    for status, response in operation["responses"].items():
        if status in example:
            response["content"]["application/json"]["example"] = example[status]
