"""GET /metrics in one process: requests per route template, latency, model version, sessions, cache."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app.core.config import Settings
from app.main import create_app
from tests.app.api.routes.test_clients import KEY, post_session, session_body

pytestmark = pytest.mark.slow  # needs the session's trained artifacts

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: TestClient) -> Samples:
    """Every sample of GET /metrics, by name and labels."""
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_requests_are_counted_and_timed_per_route_template_not_per_path(
    client: TestClient, known_client: int
) -> None:
    route = "/recommend/{client_id}"
    before = scrape(client)
    for k in (3, 4, 5):
        assert client.get(f"/recommend/{known_client}", params={"k": k}).status_code == 200
    assert client.get("/recommend/123456789").status_code == 404
    assert client.get("/no/such/page").status_code == 404
    after = scrape(client)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("wdrec_http_requests_total", method="GET", route=route, status="200") == 3
    assert grew("wdrec_http_requests_total", method="GET", route=route, status="404") == 1
    assert grew("wdrec_http_requests_total", method="GET", route="unmatched", status="404") == 1
    assert grew("wdrec_http_request_duration_seconds_count", method="GET", route=route) == 4
    assert grew("wdrec_http_request_duration_seconds_bucket", method="GET", route=route, le="+Inf") == 4
    assert grew("wdrec_http_request_duration_seconds_sum", method="GET", route=route) > 0
    raw = {dict(labels).get("route") for _, labels in after} - {None}
    assert not any(str(known_client) in r for r in raw), raw  # no raw path became a label


def test_the_loaded_model_version_is_a_gauge_labelled_with_it(client: TestClient, settings: Settings) -> None:
    version = client.get("/ready").json()["version"]
    before = scrape(client)
    assert value(before, "wdrec_model_version", version=version) >= 1  # the session's own app
    with TestClient(create_app(settings)) as another:  # one more app in this process serves it
        assert (
            value(scrape(another), "wdrec_model_version", version=version)
            == value(before, "wdrec_model_version", version=version) + 1
        )
    assert value(scrape(client), "wdrec_model_version", version=version) == value(
        before, "wdrec_model_version", version=version
    )


def test_response_cache_hits_and_misses_are_counted(client: TestClient, known_client: int) -> None:
    before = scrape(client)
    for _ in range(3):  # a query no other test asks: one miss, then two hits
        client.get(f"/recommend/{known_client}", params={"k": 7, "exclude_bought": True})
    after = scrape(client)
    lookups = "wdrec_recommend_cache_lookups_total"
    assert value(after, lookups, result="miss") - value(before, lookups, result="miss") == 1
    assert value(after, lookups, result="hit") - value(before, lookups, result="hit") == 2


def test_sessions_written_counts_new_sessions_only(
    tiny_artifacts: Path, database_url: str, known_client: int
) -> None:
    settings = Settings(artifacts_dir=tiny_artifacts, write_api_key=KEY, database_url=database_url)
    with TestClient(create_app(settings)) as writer:
        labels = [item["label"] for item in writer.get(f"/clients/{known_client}").json()["sessions"][0]]
        before = value(scrape(writer), "wdrec_sessions_written_total")
        assert post_session(writer, known_client, session_body(labels, "m-1")).status_code == 201
        assert post_session(writer, known_client, session_body(labels, "m-1")).status_code == 200
        assert post_session(writer, known_client, session_body(labels, "m-2")).status_code == 201
        assert value(scrape(writer), "wdrec_sessions_written_total") - before == 2
