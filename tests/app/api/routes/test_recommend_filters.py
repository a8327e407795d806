"""Filters on GET /recommend and POST /score: applied before the top k, part of the cache key, 422 on
contradictions."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.app.api.routes.test_recommend import assert_error
from training.artifacts import ArtifactSet

pytestmark = pytest.mark.slow  # needs the session's trained artifacts


def labels_of(body: dict[str, Any]) -> list[str]:
    return [item["label"] for item in body["recommendations"]]


def some_clients(artifacts: ArtifactSet, n: int = 20) -> list[int]:
    return [int(cid) for cid in artifacts.clients["CLNT_ID"][:n]]


def test_recommend_exclude_bought_returns_k_labels_new_to_the_client(
    client: TestClient, artifacts: ArtifactSet
) -> None:
    for client_id in some_clients(artifacts):
        plain = client.get(f"/recommend/{client_id}", params={"k": 100}).json()
        new = client.get(f"/recommend/{client_id}", params={"k": 10, "exclude_bought": "true"}).json()
        assert len(new["recommendations"]) == 10 and new["notice"] is None
        assert not any(item["bought_before"] for item in new["recommendations"])
        # Filtering happens before the top k: the new ranking is the full one without the bought labels.
        assert (
            labels_of(new)
            == [item["label"] for item in plain["recommendations"] if not item["bought_before"]][:10]
        )
        sessions = client.get(f"/clients/{client_id}").json()["sessions"]
        bought = {item["label"] for session in sessions for item in session}
        assert new["candidates"] == artifacts.vocab.n_labels - len(bought)


def test_recommend_clac1_and_exclusions_are_repeatable_and_combine(
    client: TestClient, artifacts: ArtifactSet, known_client: int
) -> None:
    vocab = artifacts.vocab
    wanted = vocab.clac1[:3]
    excluded_label = next(
        name for i, name in enumerate(vocab.labels) if vocab.clac1[vocab.label_clac1[i]] == wanted[0]
    )
    params = [("clac1", c) for c in wanted] + [("exclude", excluded_label), ("k", "5")]
    body = client.get(f"/recommend/{known_client}", params=params).json()
    assert len(body["recommendations"]) == 5
    assert {item["clac1"] for item in body["recommendations"]} <= set(wanted)
    assert excluded_label not in labels_of(body)
    others = client.get(f"/recommend/{known_client}", params=[("exclude_clac1", c) for c in wanted]).json()
    assert not {item["clac1"] for item in others["recommendations"]} & set(wanted)


def test_recommend_says_so_when_the_filters_leave_fewer_than_k(
    client: TestClient, artifacts: ArtifactSet, known_client: int
) -> None:
    vocab = artifacts.vocab
    sizes = {c: vocab.label_clac1.count(i) for i, c in enumerate(vocab.clac1)}
    small = min(sizes, key=lambda c: sizes[c])
    body = client.get(f"/recommend/{known_client}", params={"clac1": small, "k": sizes[small] + 5}).json()
    assert len(body["recommendations"]) == body["candidates"] == sizes[small]
    assert body["notice"] == f"The filters leave {sizes[small]} of the {sizes[small] + 5} labels asked for"
    assert [item["rank"] for item in body["recommendations"]] == list(range(1, sizes[small] + 1))


def test_recommend_filters_are_part_of_the_cache_key(client: TestClient, artifacts: ArtifactSet) -> None:
    client_id = some_clients(artifacts)[1]
    first = client.get(f"/recommend/{client_id}").json()
    top_clac1 = first["recommendations"][0]["clac1"]
    filtered = client.get(f"/recommend/{client_id}", params={"exclude_clac1": top_clac1}).json()
    again = client.get(f"/recommend/{client_id}").json()
    assert top_clac1 not in {item["clac1"] for item in filtered["recommendations"]}
    assert again == first and filtered != first
    # The same filters in another order or repeated are the same filters (and the same cached body).
    labels = labels_of(first)[:2]
    one = client.get(f"/recommend/{client_id}", params=[("exclude", labels[0]), ("exclude", labels[1])])
    other = client.get(
        f"/recommend/{client_id}", params=[("exclude", x) for x in (labels[1], labels[0], labels[1])]
    )
    assert one.content == other.content and not set(labels) & set(labels_of(one.json()))


def test_recommend_contradictory_filters_return_422_naming_the_conflict(
    client: TestClient, artifacts: ArtifactSet, known_client: int
) -> None:
    clac1 = artifacts.vocab.clac1[0]
    error = assert_error(
        client.get(f"/recommend/{known_client}", params={"clac1": clac1, "exclude_clac1": clac1}),
        422,
        "filter_conflict",
    )
    assert clac1 in error["message"] and error["details"]["conflict"] == ["clac1", "exclude_clac1"]
    vocab = artifacts.vocab
    small = min(range(len(vocab.clac1)), key=vocab.label_clac1.count)
    every = [("exclude", name) for name, c in zip(vocab.labels, vocab.label_clac1, strict=True) if c == small]
    assert len(every) <= 20  # the names GET /recommend takes per filter
    params = [("clac1", vocab.clac1[small]), *every]
    error = assert_error(client.get(f"/recommend/{known_client}", params=params), 422, "filter_conflict")
    assert error["details"]["conflict"] == ["clac1", "exclude"]


def test_recommend_unknown_filter_names_return_422_with_suggestions(
    client: TestClient, artifacts: ArtifactSet, known_client: int
) -> None:
    clac1 = artifacts.vocab.clac1[0]
    error = assert_error(
        client.get(f"/recommend/{known_client}", params={"exclude_clac1": clac1 + "x"}), 422, "unknown_clac1"
    )
    assert (
        error["details"]["fields"] == ["exclude_clac1"]
        and clac1 in error["details"]["suggestions"][clac1 + "x"]
    )
    assert_error(
        client.get(f"/recommend/{known_client}", params={"exclude": "없는 라벨"}), 422, "unknown_labels"
    )


def test_score_filters_apply_to_the_basket_and_history(client: TestClient, artifacts: ArtifactSet) -> None:
    labels = artifacts.vocab.labels
    request: dict[str, Any] = {"history": [labels[:3]], "basket": labels[3:5], "gender": "F", "k": 20}
    plain = client.post("/score", json=request).json()
    new = client.post("/score", json={**request, "exclude_bought": True, "exclude": [labels[10]]}).json()
    assert len(new["recommendations"]) == 20 and not set(labels_of(new)) & {*labels[:5], labels[10]}
    assert labels_of(new)[:5] == [x for x in labels_of(plain) if x not in {*labels[:5], labels[10]}][:5]
    top_clac1 = plain["recommendations"][0]["clac1"]
    only = client.post("/score", json={**request, "clac1": [top_clac1]}).json()
    assert {item["clac1"] for item in only["recommendations"]} == {top_clac1}


@pytest.mark.parametrize(
    ("filters", "code"),
    [
        ({"exclude_bought": "yes"}, "validation_error"),
        ({"clac1": "식품"}, "validation_error"),
        ({"exclude": [""]}, "validation_error"),
        ({"clac1": ["?"], "exclude_clac1": ["?"]}, "unknown_clac1"),
    ],
)
def test_score_bad_filters_return_422(client: TestClient, filters: dict[str, Any], code: str) -> None:
    assert_error(client.post("/score", json={"gender": "F", **filters}), 422, code)


def test_score_contradictory_filters_return_422(client: TestClient, artifacts: ArtifactSet) -> None:
    clac1 = artifacts.vocab.clac1[1]
    body = {"gender": "M", "clac1": [clac1], "exclude_clac1": [clac1, artifacts.vocab.clac1[0]]}
    error = assert_error(client.post("/score", json=body), 422, "filter_conflict")
    assert error["details"]["values"] == [clac1]
