from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from training.artifacts import ArtifactSet

pytestmark = pytest.mark.slow  # needs the session's trained artifacts


@pytest.fixture(scope="module")
def openapi(client: TestClient) -> dict[str, Any]:
    return dict(client.get("/openapi.json").json())


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
        assert "example" in op["responses"]["200"]["content"]["application/json"], name


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
    request = score["requestBody"]["content"]["application/json"]["example"]
    labels = set(artifacts.vocab.labels)
    assert request["basket"] and set(request["basket"]) <= labels
    assert all(set(session) <= labels for session in request["history"])
    recommend = openapi["paths"]["/recommend/{client_id}"]["get"]
    example = recommend["responses"]["200"]["content"]["application/json"]["example"]
    assert example["client_id"] in artifacts.clients["CLNT_ID"].to_list()
    assert {item["label"] for item in example["recommendations"]} <= labels
    suggestion = score["responses"]["422"]["content"]["application/json"]["example"]["error"]["details"]
    assert {label for found in suggestion["suggestions"].values() for label in found} <= labels


def test_docs_page_is_served(client: TestClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200 and "swagger" in response.text.lower()
