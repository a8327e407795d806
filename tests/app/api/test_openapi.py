from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from training.artifacts import ArtifactSet

pytestmark = pytest.mark.slow  # needs the session's trained artifacts


@pytest.fixture(scope="module")
def openapi(client: TestClient) -> dict[str, Any]:
    return dict(client.get("/openapi.json").json())


def example(content: dict[str, Any], name: str | None = None) -> Any:
    """The one example of a body, or its example called `name` (the first one when not given)."""
    if "example" in content:
        return content["example"]
    examples = content["examples"]
    return examples[name or next(iter(examples))]["value"]


def operations(openapi: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{method.upper()} {path}", op)
        for path, item in openapi["paths"].items()
        for method, op in item.items()
    ]


def test_openapi_every_route_has_a_summary_and_a_response_example(openapi: dict[str, Any]) -> None:
    assert len(operations(openapi)) == 8
    for name, op in operations(openapi):
        assert op.get("summary") and op.get("description"), name
        assert example(op["responses"]["200"]["content"]["application/json"]), name


def test_openapi_errors_are_documented_with_the_error_shape(openapi: dict[str, Any]) -> None:
    for name, op in operations(openapi):
        for status, response in op["responses"].items():
            if status != "200":
                assert response["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/ErrorResponse"
                }, (name, status)
    assert "HTTPValidationError" not in openapi["components"]["schemas"]


def test_openapi_examples_use_real_labels_and_clients(
    openapi: dict[str, Any], artifacts: ArtifactSet
) -> None:
    score = openapi["paths"]["/score"]["post"]
    request = example(score["requestBody"]["content"]["application/json"])
    labels = set(artifacts.vocab.labels)
    assert request["basket"] and set(request["basket"]) <= labels
    assert all(set(session) <= labels for session in request["history"])
    recommend = openapi["paths"]["/recommend/{client_id}"]["get"]
    ranking = example(recommend["responses"]["200"]["content"]["application/json"])
    assert ranking["client_id"] in artifacts.clients["CLNT_ID"].to_list()
    assert {item["label"] for item in ranking["recommendations"]} <= labels
    unknown = example(score["responses"]["422"]["content"]["application/json"], "unknown label")
    suggestion = unknown["error"]["details"]
    assert {label for found in suggestion["suggestions"].values() for label in found} <= labels


def test_openapi_shows_the_filters_with_examples_that_hold(openapi: dict[str, Any]) -> None:
    recommend = openapi["paths"]["/recommend/{client_id}"]["get"]
    params = {param["name"]: param for param in recommend["parameters"]}
    assert params["clac1"]["schema"]["anyOf"][0]["type"] == "array"
    assert params["exclude_bought"]["example"] is True
    excluded_clac1, excluded = params["exclude_clac1"]["example"], params["exclude"]["example"]
    responses = recommend["responses"]["200"]["content"]["application/json"]
    filtered = example(responses, "filtered")["recommendations"]
    assert len(filtered) == 3 and not any(item["bought_before"] for item in filtered)
    assert not {item["clac1"] for item in filtered} & set(excluded_clac1)
    assert not {item["label"] for item in filtered} & set(excluded)
    conflict = example(recommend["responses"]["422"]["content"]["application/json"], "contradictory filters")
    assert conflict["error"]["code"] == "filter_conflict"
    body = example(
        openapi["paths"]["/score"]["post"]["requestBody"]["content"]["application/json"], "filtered"
    )
    assert body["exclude_bought"] is True and body["exclude_clac1"] == excluded_clac1


def test_docs_page_is_served(client: TestClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200 and "swagger" in response.text.lower()
