"""`wdrec recommend --reason`: each label's reason, the one GET /recommend?explain=true gives."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from fastapi.testclient import TestClient

from app.batch import write_recommendations
from app.recommender import Recommender
from training.artifacts import ArtifactSet

pytestmark = pytest.mark.slow  # needs the session's trained artifacts

WDREC = Path(sys.executable).with_name("wdrec")


@pytest.fixture(scope="module")
def recommender(artifacts: ArtifactSet) -> Recommender:
    return Recommender(artifacts)


def test_reason_column_holds_the_apis_reasons(
    client: TestClient, recommender: Recommender, tmp_path: Path
) -> None:
    out = tmp_path / "top.parquet"
    clients = [recommender.client_id_at(row) for row in range(0, recommender.n_clients, 4)]
    write_recommendations(recommender, out, k=5, clients=clients, reason=True, batch_size=9)
    table = pl.read_parquet(out)
    assert table.columns == ["client_id", "rank", "label", "clac1", "score", "bought_before", "reason"]
    for client_id in table["client_id"].unique(maintain_order=True).to_list()[:40]:
        body = client.get(f"/recommend/{client_id}", params={"k": 5, "explain": "true"}).json()
        mine = table.filter(pl.col("client_id") == client_id)
        assert mine["label"].to_list() == [item["label"] for item in body["recommendations"]]
        assert mine["reason"].to_list() == [item["reason"] for item in body["recommendations"]]


def test_reason_with_products_repeats_the_labels_reason_on_each_product_row(
    recommender: Recommender, tmp_path: Path
) -> None:
    out = tmp_path / "top.parquet"
    clients = [recommender.client_id_at(row) for row in range(3)]
    write_recommendations(recommender, out, k=3, clients=clients, products=2, reason=True)
    table = pl.read_parquet(out)
    assert table.columns[6] == "reason" and table.columns[7] == "product_rank"
    per_label = table.group_by("client_id", "rank").agg(pl.col("reason").n_unique())
    assert per_label["reason"].to_list() == [1] * per_label.height
    assert table["reason"].null_count() == 0


def test_cli_reason_writes_the_column_to_csv(tiny_artifacts: Path, tmp_path: Path) -> None:
    clients = tmp_path / "clients.txt"
    clients.write_text(
        "CLNT_ID\n" + str(pl.read_parquet(tiny_artifacts / "current" / "clients.parquet")["CLNT_ID"][0])
    )
    out = tmp_path / "top.csv"
    command = ["recommend", "--artifacts", str(tiny_artifacts), "--out", str(out), "--k", "4"]
    done = subprocess.run(
        [str(WDREC), *command, "--clients", str(clients), "--reason"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    table = pl.read_csv(out)
    assert table.height == 4 and table["reason"].str.len_chars().min() > 0  # type: ignore[operator]
