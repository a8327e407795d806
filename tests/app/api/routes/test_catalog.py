from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.app.api.routes.test_recommend import assert_error
from training.artifacts import ArtifactSet

pytestmark = pytest.mark.slow  # needs the session's trained artifacts


def test_labels_groups_every_label_once_under_its_clac1(client: TestClient, artifacts: ArtifactSet) -> None:
    body = client.get("/labels").json()
    vocab = artifacts.vocab
    assert body["n_labels"] == vocab.n_labels
    seen = [
        (group["clac1"], label["id"], label["name"]) for group in body["groups"] for label in group["labels"]
    ]
    assert sorted(i for _, i, _ in seen) == list(range(vocab.n_labels))
    assert all(vocab.labels[i] == name and vocab.clac1[vocab.label_clac1[i]] == c for c, i, name in seen)


def test_clients_pages_with_session_counts(client: TestClient, artifacts: ArtifactSet) -> None:
    first = client.get("/clients", params={"limit": 3}).json()
    second = client.get("/clients", params={"limit": 3, "offset": 3}).json()
    ids = artifacts.clients["CLNT_ID"].to_list()
    counts = artifacts.clients["sessions"].list.len().to_list()
    assert first["total"] == len(ids) and (first["limit"], first["offset"]) == (3, 0)
    assert [c["client_id"] for c in first["clients"] + second["clients"]] == ids[:6]
    assert [c["sessions"] for c in first["clients"]] == counts[:3]


def test_clients_offset_past_the_end_returns_an_empty_page(client: TestClient) -> None:
    body = client.get("/clients", params={"offset": 10**6}).json()
    assert body["clients"] == [] and body["total"] > 0


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 1001}, {"offset": -1}])
def test_clients_bad_paging_returns_422(client: TestClient, params: dict[str, int]) -> None:
    assert_error(client.get("/clients", params=params), 422, "validation_error")


def test_client_detail_returns_demographics_and_labelled_sessions(
    client: TestClient, artifacts: ArtifactSet, known_client: int
) -> None:
    body = client.get(f"/clients/{known_client}").json()
    row = artifacts.clients.row(0, named=True)
    vocab = artifacts.vocab
    assert (body["gender"], body["age"]) == (vocab.genders[row["gender"]], vocab.ages[row["age"]])
    assert [[x["label"] for x in s] for s in body["sessions"]] == [
        [vocab.labels[i] for i in s] for s in row["sessions"]
    ]


def test_client_detail_unknown_client_returns_404(client: TestClient) -> None:
    assert_error(client.get("/clients/0"), 404, "unknown_client")


def test_model_card_has_metrics_against_baselines_and_no_file_hashes(
    client: TestClient, artifacts: ArtifactSet
) -> None:
    body = client.get("/model").json()
    assert body["version"] == artifacts.metadata["version"]
    assert body["model_method"] in body["metrics"]["test"]
    baselines = {"G-Pop", "P-Pop", "P-Pop (recency)", "ItemKNN", "TIFU-KNN", "EASE"}
    assert baselines <= set(body["metrics"]["test"])
    assert body["card"]["model"] == body["model_method"]
    assert set(body["card"]["paired_ndcg@10"]) == {"valid", "test"}
    assert body["n_labels"] == artifacts.vocab.n_labels and body["n_clients"] == artifacts.clients.height
    assert body["funnel"] and "files" not in body
