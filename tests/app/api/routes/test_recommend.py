from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.main import create_app
from app.recommender import Recommender
from training.artifacts import ArtifactSet
from training.features import EPOCH, records_of, split_examples

pytestmark = pytest.mark.slow  # needs the session's trained artifacts


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    assert body["error"]["message"]
    return dict(body["error"])


def test_recommend_known_client_returns_ranked_top_k(
    client: TestClient, known_client: int, artifacts: ArtifactSet
) -> None:
    body = client.get(f"/recommend/{known_client}", params={"k": 5}).json()
    assert (body["client_id"], body["k"], len(body["recommendations"])) == (known_client, 5, 5)
    first = body["recommendations"][0]
    assert set(first) == {
        "rank",
        "label",
        "clac1",
        "score",
        "bought_before",
        "products",
        "reason",
        "explanation",
    }
    assert first["reason"] is None and first["explanation"] is None  # only with explain=true
    assert first["label"] in artifacts.vocab.labels and first["clac1"] in artifacts.vocab.clac1
    scores = [item["score"] for item in body["recommendations"]]
    assert scores == sorted(scores, reverse=True)
    model = body["model"]
    assert model["version"] == artifacts.metadata["version"]
    assert model["metrics"]["ndcg@10"] == artifacts.metadata["metrics"]["test"]["Wide & Deep"]["ndcg@10"]
    assert model["trained_on"]["profile"] == "lpoint"


def test_recommend_default_k_is_10(client: TestClient, known_client: int) -> None:
    assert len(client.get(f"/recommend/{known_client}").json()["recommendations"]) == 10


def test_recommend_repeated_answers_are_identical_and_each_k_is_its_own(
    client: TestClient, known_client: int
) -> None:
    first, again = (client.get(f"/recommend/{known_client}", params={"k": 3}) for _ in range(2))
    assert first.headers["content-type"] == "application/json"
    assert first.content == again.content
    five = client.get(f"/recommend/{known_client}", params={"k": 5}).json()
    assert (five["k"], len(five["recommendations"])) == (5, 5)
    assert five["recommendations"][:3] == first.json()["recommendations"]


def test_recommend_unknown_client_returns_404(client: TestClient) -> None:
    error = assert_error(client.get("/recommend/999999999"), 404, "unknown_client")
    assert error["message"] == "Client 999999999 not found"


@pytest.mark.parametrize(
    ("k", "code"), [("0", "validation_error"), ("101", "invalid_query"), ("ten", "validation_error")]
)
def test_recommend_k_out_of_range_returns_422(
    client: TestClient, known_client: int, k: str, code: str
) -> None:
    assert_error(client.get(f"/recommend/{known_client}", params={"k": k}), 422, code)


def test_recommend_k_bound_is_the_label_count_when_max_k_is_larger(
    tiny_artifacts: Any, known_client: int, artifacts: ArtifactSet
) -> None:
    n = artifacts.vocab.n_labels
    app = create_app(Settings(artifacts_dir=tiny_artifacts, max_k=10 * n))
    with TestClient(app) as big:
        assert len(big.get(f"/recommend/{known_client}", params={"k": n}).json()["recommendations"]) == n
        assert_error(big.get(f"/recommend/{known_client}", params={"k": n + 1}), 422, "invalid_query")


@pytest.mark.parametrize("dated", [True, False])
def test_score_matches_the_training_side_scores_for_test_histories(
    client: TestClient, artifacts: ArtifactSet, dated: bool
) -> None:
    """POST /score with the sessions before each client's test session = the evaluation's features + model;
    with the sessions' dates and the test session's as the reference date, the calendar features too."""
    records = records_of(artifacts.clients)[:5]
    examples = split_examples(records, "test")
    with torch.inference_mode():
        inputs = (
            artifacts.builder.build_examples(examples)
            if dated
            else artifacts.builder.build_batch(examples.histories, examples.genders, examples.ages)
        )
        expected = torch.sigmoid(artifacts.model(*inputs))
    assert (inputs.ago[:, -1] >= 0).all() == dated  # the embedded data has dates
    vocab = artifacts.vocab
    for row, record in enumerate(records):
        request: dict[str, Any] = {
            "history": [[vocab.labels[i] for i in s] for s in record.sessions[:-1]],
            "k": 100,
        }
        if dated:
            iso = [str(EPOCH + dt.timedelta(days=d)) for d in record.session_days]
            request |= {"dates": iso[:-1], "date": iso[-1]}
        if record.gender:
            request["gender"] = vocab.genders[record.gender]
        if record.age:
            request["age"] = vocab.ages[record.age]
        body = client.post("/score", json=request).json()
        served = {item["label"]: item["score"] for item in body["recommendations"]}
        values, indices = torch.topk(expected[row], 100)
        assert list(served) == [vocab.labels[i] for i in indices.tolist()]
        assert list(served.values()) == pytest.approx(values.tolist(), rel=1e-5, abs=1e-7)


def test_recommend_ranks_as_of_the_date_and_says_so(client: TestClient, artifacts: ArtifactSet) -> None:
    """?date= is the reference date of the calendar features: the client's test session is left out before
    its own date, and a ranking a year on differs from one the day after."""
    record = next(r for r in records_of(artifacts.clients) if r.gender and r.age and r.days[-2] < r.days[-1])
    days = [EPOCH + dt.timedelta(days=d) for d in record.session_days]
    url = f"/recommend/{record.clnt_id}"
    as_of = client.get(url, params={"k": 100, "date": str(days[-1] + dt.timedelta(days=1))}).json()
    later = client.get(url, params={"k": 100, "date": str(days[-1] + dt.timedelta(days=365))}).json()
    assert as_of["as_of"] == str(days[-1] + dt.timedelta(days=1))
    assert [i["score"] for i in as_of["recommendations"]] != [i["score"] for i in later["recommendations"]]
    before = client.get(url, params={"k": 100, "date": str(days[-2])}).json()
    vocab = artifacts.vocab
    history = [[vocab.labels[i] for i in s] for s in record.sessions[:-1]]
    iso = [str(d) for d in days[:-1]]
    vocab_demo = {"gender": vocab.genders[record.gender], "age": vocab.ages[record.age]}
    request = {"history": history, "dates": iso, "date": str(days[-2]), "k": 100, **vocab_demo}
    same = client.post("/score", json=request)
    assert before["recommendations"] == same.json()["recommendations"]
    assert client.get(url).json()["as_of"] == str(dt.datetime.now(dt.UTC).date())


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"dates": ["2018-05-01"]}, "dates holds 1 dates for 2 non-empty sessions"),
        ({"dates": ["2018-05-02", "2018-05-01"]}, "oldest first"),
        ({"dates": ["2018-05-01", "2018-05-02"], "date": "2018-05-01"}, "after the reference date"),
        ({"dates": ["2018-05-01", "20180502"]}, "YYYY-MM-DD"),
    ],
)
def test_score_bad_dates_return_422_naming_the_problem(
    client: TestClient, artifacts: ArtifactSet, extra: dict[str, Any], message: str
) -> None:
    labels = artifacts.vocab.labels
    response = client.post("/score", json={"history": [labels[:1]], "basket": labels[1:2], **extra})
    assert response.status_code == 422 and message in response.text


def test_score_basket_returns_ranking_marking_the_basket(client: TestClient, artifacts: ArtifactSet) -> None:
    basket = artifacts.vocab.labels[:2]
    body = client.post("/score", json={"basket": basket, "gender": "F", "age": 30, "k": 100}).json()
    assert body["client_id"] is None and body["k"] == 100
    marked = {item["label"] for item in body["recommendations"] if item["bought_before"]}
    assert marked == set(basket) & {item["label"] for item in body["recommendations"]}


def test_score_basket_equals_history_with_the_basket_as_newest_session(
    client: TestClient, artifacts: ArtifactSet
) -> None:
    labels = artifacts.vocab.labels
    as_basket = client.post("/score", json={"history": [labels[5:7]], "basket": labels[9:11]}).json()
    as_history = client.post("/score", json={"history": [labels[5:7], labels[9:11]]}).json()
    assert as_basket["recommendations"] == as_history["recommendations"]


def test_score_session_order_and_duplicates_do_not_matter(client: TestClient, artifacts: ArtifactSet) -> None:
    labels = artifacts.vocab.labels
    shuffled = client.post("/score", json={"basket": [labels[9], labels[4], labels[9]], "gender": "F"}).json()
    ordered = client.post("/score", json={"basket": [labels[4], labels[9]], "gender": "F"}).json()
    assert shuffled["recommendations"] == ordered["recommendations"]


def test_score_unknown_labels_of_every_session_are_listed_together(client: TestClient) -> None:
    body = {"history": [["없는 라벨 1"], ["없는 라벨 2"]], "basket": ["없는 라벨 3"]}
    error = assert_error(client.post("/score", json=body), 422, "unknown_labels")
    assert error["details"]["unknown"] == ["없는 라벨 1", "없는 라벨 2", "없는 라벨 3"]


def test_score_demographics_only_returns_cold_start(client: TestClient) -> None:
    body = client.post("/score", json={"gender": "M", "k": 3}).json()
    assert len(body["recommendations"]) == 3
    assert not any(item["bought_before"] for item in body["recommendations"])


def test_score_unknown_labels_return_422_with_suggestions(client: TestClient, artifacts: ArtifactSet) -> None:
    real = artifacts.vocab.labels[10]
    error = assert_error(
        client.post("/score", json={"basket": [real, real[:-1], "zzz"]}), 422, "unknown_labels"
    )
    assert error["details"]["unknown"] == [real[:-1], "zzz"]
    assert real in error["details"]["suggestions"][real[:-1]]


@pytest.mark.parametrize("request_body", [{}, {"basket": [], "history": [[]]}])
def test_score_nothing_usable_returns_422(client: TestClient, request_body: dict[str, Any]) -> None:
    assert_error(client.post("/score", json=request_body), 422, "invalid_query")


@pytest.mark.parametrize(
    "request_body",
    [
        {"gender": "F", "age": False},
        {"gender": "F", "age": "30"},
        {"gender": "F", "age": 30.0},
        {"gender": "X"},
        {"gender": "F", "k": "10"},
        {"gender": "F", "coupon": True},
        {"basket": "여성샴푸"},
        {"basket": [""]},
        {"basket": [123]},
    ],
)
def test_score_strict_input_is_rejected_not_coerced(client: TestClient, request_body: dict[str, Any]) -> None:
    error = assert_error(client.post("/score", json=request_body), 422, "validation_error")
    assert error["details"][0]["loc"][0] == "body"


def test_score_unknown_age_returns_422(client: TestClient) -> None:
    assert_error(client.post("/score", json={"age": 35}), 422, "invalid_query")


def test_score_basket_longer_than_the_limit_returns_422(client: TestClient, settings: Settings) -> None:
    basket = ["x"] * (settings.max_basket_len + 1)
    assert_error(client.post("/score", json={"basket": basket}), 422, "invalid_query")


def test_score_body_over_the_size_limit_returns_413(client: TestClient, settings: Settings) -> None:
    body = b'{"basket": ["' + b"a" * settings.max_body_bytes + b'"]}'
    response = client.post("/score", content=body, headers={"content-type": "application/json"})
    assert_error(response, 413, "payload_too_large")


def test_score_invalid_json_returns_422(client: TestClient) -> None:
    response = client.post("/score", content=b"{not json", headers={"content-type": "application/json"})
    assert_error(response, 422, "validation_error")


def test_recommender_gets_the_same_answer_as_the_route(
    client: TestClient, artifacts: ArtifactSet, known_client: int
) -> None:
    day = dt.date(2026, 11, 30)  # the route's reference date, given to both (the route's default is today)
    items = Recommender(artifacts).recommend(known_client, 10, today=day)
    served = client.get(f"/recommend/{known_client}?date={day}").json()["recommendations"]
    assert [item["label"] for item in served] == [item.label for item in items]
