"""The write API and the read path over it, through the real lifespan, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.main import create_app
from app.schemas import RecordedSessionOut
from tests.app.api.routes.test_recommend import assert_error
from training.artifacts import ArtifactSet

pytestmark = pytest.mark.slow  # needs the session's trained artifacts

KEY = "write-key"
NEW_CLIENT = 900_000_001  # not in the training data
TODAY = dt.datetime.now(dt.UTC).date()


@pytest.fixture
def live_settings(tiny_artifacts: Path, database_url: str) -> Settings:
    return Settings(artifacts_dir=tiny_artifacts, write_api_key=KEY, database_url=database_url)


@pytest.fixture
def writer(live_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(live_settings)) as client:
        yield client


def post_session(client: TestClient, client_id: int, body: dict[str, Any], key: str | None = KEY) -> Any:
    headers = {"X-API-Key": key} if key is not None else {}
    return client.post(f"/clients/{client_id}/sessions", json=body, headers=headers)


def session_body(labels: list[str], session_id: str = "web-1", date: dt.date = TODAY) -> dict[str, Any]:
    return {"session_id": session_id, "date": date.isoformat(), "labels": labels}


def unbought(artifacts: ArtifactSet, client_id: int, n: int = 3) -> list[str]:
    """Labels the client never bought in the training data."""
    row = artifacts.clients["CLNT_ID"].to_list().index(client_id)
    bought = {label for session in artifacts.clients["sessions"][row] for label in session}
    return [name for i, name in enumerate(artifacts.vocab.labels) if i not in bought][:n]


def test_write_routes_are_absent_without_a_write_key(client: TestClient, known_client: int) -> None:
    assert_error(post_session(client, known_client, session_body(["x"])), 404, "not_found")
    paths = client.get("/openapi.json").json()["paths"]
    assert "/clients/{client_id}/sessions" not in paths and "put" not in paths["/clients/{client_id}"]


@pytest.mark.parametrize("key", [None, "", "wrong", KEY.upper()])
def test_writes_without_the_right_key_return_401(writer: TestClient, known_client: int, key: str) -> None:
    assert_error(post_session(writer, known_client, session_body(["x"]), key), 401, "unauthorized")
    response = writer.put(f"/clients/{known_client}", json={"age": 30}, headers={"X-API-Key": key or ""})
    assert_error(response, 401, "unauthorized")


def test_the_write_routes_document_the_write_key_as_a_security_scheme(writer: TestClient) -> None:
    openapi = writer.get("/openapi.json").json()
    scheme = openapi["components"]["securitySchemes"]["WriteKey"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "X-API-Key")
    paths = openapi["paths"]
    for op in (paths["/clients/{client_id}/sessions"]["post"], paths["/clients/{client_id}"]["put"]):
        assert op["security"] == [{"WriteKey": []}]
        assert [param["in"] for param in op["parameters"]] == ["path"]  # the key is no header parameter
    assert "security" not in paths["/clients/{client_id}"]["get"]
    created = paths["/clients/{client_id}/sessions"]["post"]["responses"]["201"]["content"]
    assert created["application/json"]["schema"] == {"$ref": "#/components/schemas/RecordedSessionOut"}


def test_a_recorded_session_changes_the_next_ranking_and_shows_on_the_client(
    writer: TestClient, known_client: int, artifacts: ArtifactSet
) -> None:
    before = writer.get(f"/recommend/{known_client}", params={"k": 20}).json()
    labels = unbought(artifacts, known_client)
    response = post_session(writer, known_client, session_body(labels))
    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "application/json"
    stored = response.json()
    assert RecordedSessionOut.model_validate(stored).model_dump(mode="json") == stored
    assert [item["label"] for item in stored["labels"]] == labels and stored["products"] is None
    after = writer.get(f"/recommend/{known_client}", params={"k": 20}).json()
    assert after["recommendations"] != before["recommendations"]
    marked = {item["label"] for item in after["recommendations"] if item["bought_before"]}
    assert marked & set(labels) == {item["label"] for item in after["recommendations"]} & set(labels)
    detail = writer.get(f"/clients/{known_client}").json()
    assert detail["in_training"] is True and detail["recorded_sessions"] == [stored]


def test_the_same_session_again_is_200_and_another_body_409(writer: TestClient, known_client: int) -> None:
    labels = writer.get(f"/clients/{known_client}").json()["sessions"][0]
    body = session_body([item["label"] for item in labels], session_id="repeat")
    first = post_session(writer, known_client, body)
    again = post_session(writer, known_client, body)
    assert (first.status_code, again.status_code) == (201, 200) and again.json() == first.json()
    changed = {**body, "date": (TODAY - dt.timedelta(days=1)).isoformat()}
    error = assert_error(post_session(writer, known_client, changed), 409, "session_conflict")
    assert error["details"]["stored"]["date"] == TODAY.isoformat()
    assert len(writer.get(f"/clients/{known_client}").json()["recorded_sessions"]) == 1


def test_a_client_unknown_to_training_gets_recommendations_once_it_has_a_session(
    writer: TestClient, artifacts: ArtifactSet
) -> None:
    assert_error(writer.get(f"/recommend/{NEW_CLIENT}"), 404, "unknown_client")
    assert_error(writer.get(f"/clients/{NEW_CLIENT}"), 404, "unknown_client")
    labels = artifacts.vocab.labels[:2]
    assert post_session(writer, NEW_CLIENT, session_body(labels)).status_code == 201
    ranked = writer.get(f"/recommend/{NEW_CLIENT}", params={"k": 5}).json()
    assert ranked["client_id"] == NEW_CLIENT and len(ranked["recommendations"]) == 5
    detail = writer.get(f"/clients/{NEW_CLIENT}").json()
    assert (detail["in_training"], detail["gender"], detail["age"], detail["sessions"]) == (False, "?", 0, [])
    assert [item["label"] for item in detail["recorded_sessions"][0]["labels"]] == labels


def put_demographics(client: TestClient, client_id: int, body: dict[str, Any]) -> Any:
    return client.put(f"/clients/{client_id}", json=body, headers={"X-API-Key": KEY})


def test_put_demographics_sets_them_and_they_change_the_ranking(
    writer: TestClient, known_client: int
) -> None:
    before = writer.get(f"/recommend/{known_client}", params={"k": 20}).json()["recommendations"]
    trained = writer.get(f"/clients/{known_client}").json()
    other_gender = "M" if trained["gender"] == "F" else "F"
    response = put_demographics(writer, known_client, {"gender": other_gender, "age": 80})
    assert response.status_code == 200, response.text
    assert (response.json()["gender"], response.json()["age"]) == (other_gender, 80)
    assert response.json()["sessions"] == trained["sessions"]
    after = writer.get(f"/recommend/{known_client}", params={"k": 20}).json()["recommendations"]
    assert [item["score"] for item in after] != [item["score"] for item in before]
    cleared = put_demographics(writer, known_client, {}).json()  # not set: the training data's again
    assert (cleared["gender"], cleared["age"]) == (trained["gender"], trained["age"])


def test_demographics_alone_make_a_new_client_known(writer: TestClient) -> None:
    assert_error(writer.get(f"/recommend/{NEW_CLIENT}"), 404, "unknown_client")
    assert put_demographics(writer, NEW_CLIENT, {"gender": "F", "age": 30}).status_code == 200
    ranked = writer.get(f"/recommend/{NEW_CLIENT}", params={"k": 3})
    assert ranked.status_code == 200 and len(ranked.json()["recommendations"]) == 3


@pytest.mark.parametrize(
    ("body", "code", "needle"),
    [
        ({"gender": "F", "age": 35}, "invalid_query", "Unknown age 35"),
        ({"gender": "X"}, "validation_error", ""),
        ({"age": "30"}, "validation_error", ""),
        ({"height": 180}, "validation_error", ""),
    ],
)
def test_put_demographics_outside_the_vocabulary_returns_422(
    writer: TestClient, known_client: int, body: dict[str, Any], code: str, needle: str
) -> None:
    error = assert_error(
        writer.put(f"/clients/{known_client}", json=body, headers={"X-API-Key": KEY}), 422, code
    )
    assert needle in error["message"]


def test_unknown_labels_are_422_naming_them(writer: TestClient, known_client: int) -> None:
    error = assert_error(
        post_session(writer, known_client, session_body(["없는 라벨", "zzz"])), 422, "unknown_labels"
    )
    assert error["details"]["unknown"] == ["없는 라벨", "zzz"]
    assert writer.get(f"/clients/{known_client}").json()["recorded_sessions"] == []


def test_unknown_products_are_422_naming_them(writer: TestClient, known_client: int) -> None:
    body = {"session_id": "p", "date": TODAY.isoformat(), "products": [123456789, 5]}
    error = assert_error(post_session(writer, known_client, body), 422, "unknown_products")
    assert error["details"] == {"unknown": [123456789, 5], "without_label": []}


def test_a_session_of_products_is_recorded_with_their_labels(
    writer: TestClient, known_client: int, artifacts: ArtifactSet
) -> None:
    assert artifacts.products is not None
    catalogue = artifacts.products.catalogue.filter(pl.col("label").is_not_null())
    codes = catalogue["PD_C"].to_list()[:2] + catalogue["PD_C"].to_list()[:1]  # a repeat counts once
    labels = list(dict.fromkeys(artifacts.vocab.labels[i] for i in catalogue["label"].to_list()[:2]))
    body = {"session_id": "by-products", "date": TODAY.isoformat(), "products": codes}
    stored = post_session(writer, known_client, body)
    assert stored.status_code == 201, stored.text
    assert stored.json()["products"] == codes
    assert [item["label"] for item in stored.json()["labels"]] == labels
    assert post_session(writer, known_client, body).status_code == 200
    assert post_session(writer, known_client, {**body, "products": codes[:1]}).status_code == 409


def test_a_date_in_the_future_is_422(writer: TestClient, known_client: int) -> None:
    body = session_body(["x"], date=TODAY + dt.timedelta(days=2))
    error = assert_error(post_session(writer, known_client, body), 422, "invalid_query")
    assert "in the future" in error["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"session_id": "s", "date": TODAY.isoformat()},  # neither labels nor products
        {"session_id": "s", "date": TODAY.isoformat(), "labels": ["a"], "products": [1]},  # both
        {"session_id": "s", "date": "20261130", "labels": ["a"]},  # not ISO
        {"session_id": "s", "date": 20261130, "labels": ["a"]},
        {"session_id": "", "date": TODAY.isoformat(), "labels": ["a"]},
        {"session_id": "a b", "date": TODAY.isoformat(), "labels": ["a"]},
        {"session_id": "s", "date": TODAY.isoformat(), "labels": []},
        {"session_id": "s", "date": TODAY.isoformat(), "products": [-1]},
        {"session_id": "s", "date": TODAY.isoformat(), "labels": ["a"], "coupon": 1},
    ],
)
def test_malformed_sessions_are_422(writer: TestClient, known_client: int, body: dict[str, Any]) -> None:
    assert_error(post_session(writer, known_client, body), 422, "validation_error")


@pytest.mark.parametrize("client_id", ["-1", str(2**63)])
def test_client_ids_outside_64_bit_range_are_422(writer: TestClient, client_id: str) -> None:
    assert_error(writer.get(f"/recommend/{client_id}"), 422, "validation_error")
    assert_error(
        writer.post(f"/clients/{client_id}/sessions", json=session_body(["a"]), headers={"X-API-Key": KEY}),
        422,
        "validation_error",
    )


def test_a_write_through_one_app_is_read_by_another_on_the_same_database(
    live_settings: Settings, known_client: int, artifacts: ArtifactSet
) -> None:
    # Two apps over one database: two workers (or replicas), each with its own response cache.
    with TestClient(create_app(live_settings)) as reader, TestClient(create_app(live_settings)) as other:
        cached = reader.get(f"/recommend/{known_client}").json()
        assert reader.get(f"/recommend/{known_client}").json() == cached  # now in reader's cache
        assert (
            post_session(other, known_client, session_body(unbought(artifacts, known_client))).status_code
            == 201
        )
        assert reader.get(f"/recommend/{known_client}").json() != cached
        assert (
            other.get(f"/recommend/{known_client}").json() == reader.get(f"/recommend/{known_client}").json()
        )


def test_a_wrong_method_lists_the_read_and_write_methods_in_allow(
    writer: TestClient, known_client: int
) -> None:
    response = writer.delete(f"/clients/{known_client}")
    assert_error(response, 405, "method_not_allowed")
    assert {"GET", "PUT"} <= set(response.headers["allow"].split(", "))
