"""Limits and hostile input: body size (declared, chunked, lying), lengths, k bounds, odd bodies and IDs.
Every refusal is a 4xx in the one error shape, with no stack trace and no echo of a huge input."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.recommender import Recommender
from training.artifacts import ArtifactSet

pytestmark = pytest.mark.slow  # needs the session's trained artifacts


@pytest.fixture(scope="module")
def label(artifacts: ArtifactSet) -> str:
    return str(artifacts.vocab.labels[0])


@pytest.fixture(scope="module")
def max_k(artifacts: ArtifactSet, settings: Settings) -> int:
    return Recommender(artifacts, max_k=settings.max_k).max_k


def _assert_clean_refusal(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert "Traceback" not in response.text and 'File "' not in response.text
    assert len(response.content) < 4096  # no echo of the input


def _chunks(total: int) -> Iterator[bytes]:
    yield b'{"basket": ["'
    for _ in range(total // 1024):
        yield b"x" * 1024
    yield b'"]}'


def test_chunked_body_over_the_limit_returns_413(client: TestClient, settings: Settings) -> None:
    response = client.post(
        "/score", content=_chunks(2 * settings.max_body_bytes), headers={"content-type": "application/json"}
    )
    _assert_clean_refusal(response, 413)
    assert "content-length" not in response.request.headers  # really sent without a declared size


def test_body_at_the_limit_is_parsed(client: TestClient, settings: Settings, label: str) -> None:
    body = f'{{"basket": ["{label}"], "k": 3}}'.encode()
    padded = body + b" " * (settings.max_body_bytes - len(body))  # JSON allows trailing blanks
    response = client.post("/score", content=padded, headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text


def test_history_longer_than_the_limit_returns_422(
    client: TestClient, settings: Settings, label: str
) -> None:
    history = [[label]] * (settings.max_history_len + 1)
    _assert_clean_refusal(client.post("/score", json={"history": history}), 422)


@pytest.mark.parametrize("name", ["", "x" * 101])
def test_label_of_bad_length_returns_422(client: TestClient, name: str) -> None:
    response = client.post("/score", json={"basket": [name]})
    _assert_clean_refusal(response, 422)
    assert response.json()["error"]["code"] == "validation_error"


@pytest.mark.parametrize("k", [0, -1, "max+1", 10**30])
def test_score_k_outside_its_bounds_returns_422(client: TestClient, label: str, max_k: int, k: Any) -> None:
    body = {"basket": [label], "k": max_k + 1 if k == "max+1" else k}
    _assert_clean_refusal(client.post("/score", json=body), 422)


@pytest.mark.parametrize("k", [0, -1, "max+1", 10**30, "ten"])
def test_recommend_k_outside_its_bounds_returns_422(
    client: TestClient, known_client: int, max_k: int, k: Any
) -> None:
    params = {"k": max_k + 1 if k == "max+1" else k}
    _assert_clean_refusal(client.get(f"/recommend/{known_client}", params=params), 422)


def test_k_at_its_bounds_is_served(client: TestClient, known_client: int, label: str, max_k: int) -> None:
    for k in (1, max_k):
        assert len(client.get(f"/recommend/{known_client}", params={"k": k}).json()["recommendations"]) == k
        assert len(client.post("/score", json={"basket": [label], "k": k}).json()["recommendations"]) == k


@pytest.mark.parametrize("client_id", [str(2**70), "-1", "1e3", "0x10", "%00"])
def test_odd_client_ids_are_refused_cleanly(client: TestClient, client_id: str) -> None:
    response = client.get(f"/recommend/{client_id}")
    assert response.status_code in (404, 422), response.text
    _assert_clean_refusal(response, response.status_code)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"[" * 20_000 + b"]" * 20_000, 400),  # deep nesting: the parser gives up (documented 400)
        (b"\xff\xfe\x00garbage", 422),  # not UTF-8
        (b'{"basket": ["a"], "basket": 5}', 422),  # duplicate key, the last one wins and is wrong
        (b"null", 422),
        (b'{"basket": ["a"], "extra": 1}', 422),  # unknown fields are refused, not ignored
        (b'{"age": 1e400}', 422),
    ],
)
def test_hostile_bodies_are_refused_cleanly(client: TestClient, body: bytes, status: int) -> None:
    response = client.post("/score", content=body, headers={"content-type": "application/json"})
    _assert_clean_refusal(response, status)


def test_limits_from_settings_are_the_documented_defaults() -> None:
    settings = Settings()
    assert settings.max_body_bytes == 64 * 1024 and settings.max_basket_len == 100
    assert settings.max_history_len == 50 and settings.max_k == 100
    assert settings.cors_origins == [] and settings.admin_api_key is None
