"""`wdrec recommend` over live histories: every recorded client too, each ranked from its training and
recorded sessions exactly as GET /recommend ranks it, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from fastapi.testclient import TestClient

from app.batch import BatchInputError, run_recommend
from app.core.config import Settings
from app.filters import NO_FILTERS, Filters
from app.main import create_app
from training.artifacts import ArtifactSet

pytestmark = pytest.mark.slow  # needs the session's trained artifacts

KEY = "write-key"
NEW_SHOPPER, NEW_PROFILE = 900_000_011, 900_000_012  # not in the training data
TODAY = dt.datetime.now(dt.UTC).date()


@pytest.fixture
def writer(tiny_artifacts: Path, database_url: str) -> Iterator[TestClient]:
    settings = Settings(artifacts_dir=tiny_artifacts, write_api_key=KEY, database_url=database_url)
    with TestClient(create_app(settings)) as client:
        yield client


def record(writer: TestClient, client_id: int, labels: list[str], session_id: str) -> None:
    body = {"session_id": session_id, "date": TODAY.isoformat(), "labels": labels}
    response = writer.post(f"/clients/{client_id}/sessions", json=body, headers={"X-API-Key": KEY})
    assert response.status_code == 201, response.text


def api_rows(writer: TestClient, client_id: int, params: list[tuple[str, Any]]) -> list[tuple[Any, ...]]:
    body = writer.get(f"/recommend/{client_id}", params=[("k", 5), *params]).json()
    return [
        (client_id, item["rank"], item["label"], item["clac1"], item["score"], item["bought_before"])
        for item in body["recommendations"]
    ]


@pytest.mark.parametrize(
    ("filters", "params"),
    [(NO_FILTERS, []), (Filters.of(exclude_bought=True), [("exclude_bought", "true")])],
    ids=["plain", "new-to-you"],
)
def test_recorded_sessions_and_clients_are_ranked_as_the_api_ranks_them(
    writer: TestClient,
    tiny_artifacts: Path,
    artifacts: ArtifactSet,
    database_url: str,
    tmp_path: Path,
    filters: Filters,
    params: list[tuple[str, Any]],
) -> None:
    labels = artifacts.vocab.labels
    known = int(artifacts.clients["CLNT_ID"][3])
    record(writer, known, [labels[7], labels[40]], "today-1")
    record(writer, NEW_SHOPPER, [labels[2], labels[9], labels[11]], "first")
    response = writer.put(f"/clients/{NEW_PROFILE}", json={"age": 30}, headers={"X-API-Key": KEY})
    assert response.status_code == 200, response.text
    out = tmp_path / "top.parquet"
    summary = run_recommend(
        tiny_artifacts, out, k=5, filters=filters, clients_file=None, fmt=None, database=database_url
    )
    table = pl.read_parquet(out)
    ids = table["client_id"].unique(maintain_order=True).to_list()
    training = artifacts.clients["CLNT_ID"].to_list()
    assert ids == [*training, NEW_SHOPPER, NEW_PROFILE] and summary.clients == len(ids)
    for client_id in (known, NEW_SHOPPER, NEW_PROFILE, *training[:30]):
        mine = table.filter(pl.col("client_id") == client_id).rows()
        assert mine == api_rows(writer, client_id, params), client_id
    # The recorded session moved the known client's ranking: the file is not the training data's.
    trained_only = tmp_path / "trained.parquet"
    run_recommend(tiny_artifacts, trained_only, k=5, filters=filters, clients_file=None, fmt=None)
    before = pl.read_parquet(trained_only).filter(pl.col("client_id") == known).rows()
    assert before != table.filter(pl.col("client_id") == known).rows()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_clients_file_may_name_recorded_clients_but_not_strangers(
    writer: TestClient, tiny_artifacts: Path, artifacts: ArtifactSet, database_url: str, tmp_path: Path
) -> None:
    record(writer, NEW_SHOPPER, [artifacts.vocab.labels[5]], "first")
    listed = tmp_path / "clients.txt"
    listed.write_text(f"{NEW_SHOPPER}\n{artifacts.clients['CLNT_ID'][0]}\n", encoding="utf-8")
    out = tmp_path / "some.csv"
    run_recommend(
        tiny_artifacts, out, k=3, filters=NO_FILTERS, clients_file=listed, fmt=None, database=database_url
    )
    assert pl.read_csv(out)["client_id"].unique(maintain_order=True).to_list() == [
        NEW_SHOPPER,
        artifacts.clients["CLNT_ID"][0],
    ]
    listed.write_text(f"{NEW_SHOPPER}\n{NEW_PROFILE}\n", encoding="utf-8")
    with pytest.raises(BatchInputError, match=f"1 client ID\\(s\\) neither .* nor recorded: {NEW_PROFILE}"):
        run_recommend(
            tiny_artifacts, out, k=3, filters=NO_FILTERS, clients_file=listed, fmt=None, database=database_url
        )


def test_without_a_database_file_nothing_is_recorded_and_none_is_created(
    tiny_artifacts: Path, artifacts: ArtifactSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv("WDREC_STATE_DIR", str(state))
    out = tmp_path / "top.parquet"
    summary = run_recommend(tiny_artifacts, out, k=2, filters=NO_FILTERS, clients_file=None, fmt=None)
    assert summary.clients == artifacts.clients.height
    assert not state.exists()
