"""`read_query` parses and rejects a query string exactly as FastAPI's own query model does, and the docs
are FastAPI's for that model."""

from __future__ import annotations

from typing import Annotated

import pytest
from fastapi import Depends, FastAPI, Query
from fastapi.testclient import TestClient

from app.api.query_model import query_parameters, read_query
from app.main import create_app
from app.schemas import MAX_QUERY_VALUES, RecommendQuery


@pytest.fixture(scope="module")
def both() -> TestClient:
    """One app reading RecommendQuery both ways, with FastAPI's default 422 body (it echoes every error
    whole: location, message, type, input and context)."""
    app = FastAPI()

    @app.get("/fastapi")
    async def by_fastapi(query: Annotated[RecommendQuery, Query()]) -> RecommendQuery:
        return query

    @app.get("/ours")
    async def by_read_query(
        query: Annotated[RecommendQuery, Depends(read_query(RecommendQuery))],
    ) -> RecommendQuery:
        return query

    return TestClient(app)


QUERIES = [
    "",
    "k=5",
    "k=5&k=7",  # a repeated single value: the last one
    "k=5&unknown=1&clac1=a",
    "clac1=a&clac1=b&exclude_clac1=c&exclude=x&exclude=y",
    "exclude_bought=true&exclude_bought_products=1&explain=yes",
    "exclude_bought=off&explain=0",
    "products=3&date=2024-02-29",
    # invalid, each as FastAPI reports it
    "k=0",
    "k=abc",
    "k=",
    "k=1.5",
    "products=21",
    "products=-1",
    "exclude_bought=maybe",
    "date=2024-13-01",
    "date=20240101",
    "date=1700000000",
    "clac1=",
    "exclude=" + "x" * 101,
    "&".join(["clac1=a"] * (MAX_QUERY_VALUES + 1)),
    "k=0&products=99&date=x&explain=z",
]


@pytest.mark.parametrize("query", QUERIES)
def test_read_query_answers_as_fastapi_does(both: TestClient, query: str) -> None:
    expected = both.get(f"/fastapi?{query}")
    ours = both.get(f"/ours?{query}")
    assert (ours.status_code, ours.json()) == (expected.status_code, expected.json())


def test_recommend_documents_each_query_field_once_with_its_constraints() -> None:
    spec = create_app().openapi()
    parameters = spec["paths"]["/recommend/{client_id}"]["get"]["parameters"]
    assert [p["name"] for p in parameters] == ["client_id", *RecommendQuery.model_fields]
    assert parameters[1:] == query_parameters(RecommendQuery)
    k = parameters[1]
    assert (k["in"], k["required"], k["schema"]["minimum"], k["schema"]["default"]) == ("query", False, 1, 10)
