"""`explain=true` on GET /recommend and `"explain": true` in POST /score: contributions and reasons."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient

from app.recommender import Recommender
from training.artifacts import ArtifactSet
from training.model import WideTerms

pytestmark = pytest.mark.slow  # needs the session's trained artifacts

TOLERANCE = 1e-5


def forward_logits(artifacts: ArtifactSet, client_id: int, labels: list[str], today: dt.date) -> list[float]:
    """The exported model's forward logits of `labels` for a client as of `today`, by the training side's
    own code."""
    recommender = Recommender(artifacts)
    inputs = recommender.model_inputs([recommender.client_query(client_id, today=today)])
    with torch.inference_mode():
        logits = artifacts.model(*inputs)[0]
    return [float(logits[artifacts.vocab.labels.index(name)]) for name in labels]


def check_explained(item: dict[str, Any], forward: float | None = None) -> None:
    explanation = item["explanation"]
    values = [c["value"] for c in explanation["contributions"]]
    assert math.fsum(values) == pytest.approx(explanation["logit"], abs=TOLERANCE)
    if forward is not None:
        assert explanation["logit"] == pytest.approx(forward, abs=TOLERANCE)
    assert 1 / (1 + math.exp(-explanation["logit"])) == pytest.approx(item["score"], abs=1e-5)
    assert {c["term"] for c in explanation["contributions"]} == {*WideTerms._fields, "deep"}
    assert [abs(v) for v in values] == sorted((abs(v) for v in values), reverse=True)
    (copurchase,) = [c for c in explanation["contributions"] if c["term"] == "copurchase"]
    assert math.fsum(s["value"] for s in copurchase["sources"]) == pytest.approx(
        copurchase["value"], abs=TOLERANCE
    )
    assert all(c["sources"] is None for c in explanation["contributions"] if c["term"] != "copurchase")
    assert isinstance(item["reason"], str) and item["reason"]


def test_recommend_explain_sums_to_the_forward_logit_for_many_clients(
    client: TestClient, artifacts: ArtifactSet
) -> None:
    clients, today = artifacts.clients["CLNT_ID"].to_list()[::5], dt.date(2018, 10, 1)
    for client_id in clients:
        params = {"k": 10, "explain": "true", "date": str(today)}
        items = client.get(f"/recommend/{client_id}", params=params).json()["recommendations"]
        forward = forward_logits(artifacts, client_id, [item["label"] for item in items], today)
        for item, logit in zip(items, forward, strict=True):
            check_explained(item, logit)


def test_recommend_explain_is_its_own_cache_entry_and_keeps_the_ranking(
    client: TestClient, known_client: int
) -> None:
    plain = client.get(f"/recommend/{known_client}", params={"k": 5}).json()
    explained = client.get(f"/recommend/{known_client}", params={"k": 5, "explain": "true"}).json()
    again = client.get(f"/recommend/{known_client}", params={"k": 5}).json()
    assert all(item["explanation"] is None and item["reason"] is None for item in plain["recommendations"])
    assert again == plain
    strip = [{**item, "reason": None, "explanation": None} for item in explained["recommendations"]]
    assert strip == plain["recommendations"]
    for item in explained["recommendations"]:
        check_explained(item)


def test_recommend_explain_with_filters_explains_the_filtered_ranking(
    client: TestClient, known_client: int
) -> None:
    params = {"k": 5, "explain": "true", "exclude_bought": "true"}
    body = client.get(f"/recommend/{known_client}", params=params).json()
    plain = client.get(f"/recommend/{known_client}", params={"k": 5, "exclude_bought": "true"}).json()
    assert [i["label"] for i in body["recommendations"]] == [i["label"] for i in plain["recommendations"]]
    for item in body["recommendations"]:
        assert not item["bought_before"]
        check_explained(item)
        assert "bought in" not in item["reason"]  # new to the client: no repeat history to quote
        (repeat,) = [c for c in item["explanation"]["contributions"] if c["term"] == "repeat"]
        assert repeat["value"] == 0


def test_score_explain_in_the_body(client: TestClient, artifacts: ArtifactSet) -> None:
    labels = artifacts.vocab.labels
    request = {"basket": [labels[0], labels[3]], "history": [[labels[0]]], "gender": "F", "age": 30}
    body = client.post("/score", json={**request, "k": 5, "explain": True}).json()
    plain = client.post("/score", json={**request, "k": 5}).json()
    assert [i["score"] for i in body["recommendations"]] == [i["score"] for i in plain["recommendations"]]
    for item in body["recommendations"]:
        check_explained(item)
    reasons = " ".join(item["reason"] for item in body["recommendations"])
    assert "women in their 30s" in reasons or "bought in" in reasons or "often bought with" in reasons


def test_score_explain_must_be_a_boolean(client: TestClient, artifacts: ArtifactSet) -> None:
    response = client.post("/score", json={"gender": "F", "explain": "yes"})
    assert response.status_code == 422 and response.json()["error"]["code"] == "validation_error"


def test_openapi_documents_explain_with_an_example(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    params = {p["name"]: p for p in schema["paths"]["/recommend/{client_id}"]["get"]["parameters"]}
    assert params["explain"]["schema"]["type"] == "boolean"
    assert "explain" in schema["components"]["schemas"]["ScoreRequest"]["properties"]
    examples = schema["paths"]["/recommend/{client_id}"]["get"]["responses"]["200"]["content"][
        "application/json"
    ]["examples"]
    explained = examples["explained"]["value"]["recommendations"]
    for item in explained:
        check_explained(item)
