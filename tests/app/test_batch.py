"""`wdrec recommend`: every client's top k in one file, identical to what GET /recommend answers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from fastapi.testclient import TestClient

from app.batch import BatchInputError, clients_to_rank, read_client_ids, write_recommendations
from app.errors import FilterConflictError, UnknownClientError
from app.filters import Filters
from app.recommender import Recommender
from training.artifacts import ArtifactSet

pytestmark = pytest.mark.slow  # needs the session's trained artifacts

WDREC = Path(sys.executable).with_name("wdrec")


@pytest.fixture(scope="module")
def recommender(artifacts: ArtifactSet) -> Recommender:
    return Recommender(artifacts)


def api_rows(client: TestClient, client_id: int, params: list[tuple[str, Any]]) -> list[tuple[Any, ...]]:
    body = client.get(f"/recommend/{client_id}", params=params).json()
    return [
        (client_id, item["rank"], item["label"], item["clac1"], item["score"], item["bought_before"])
        for item in body["recommendations"]
    ]


@pytest.mark.parametrize(
    ("filters", "params"),
    [
        (Filters(), []),
        (Filters.of(exclude_bought=True, exclude_clac1=["__first__"]), [("exclude_bought", "true")]),
    ],
    ids=["plain", "filtered"],
)
def test_batch_file_holds_exactly_the_apis_rankings_for_every_client(
    client: TestClient,
    recommender: Recommender,
    tmp_path: Path,
    filters: Filters,
    params: list[tuple[str, Any]],
) -> None:
    if filters.exclude_clac1:  # a real category of the loaded vocabulary
        first = recommender.vocab.clac1[0]
        filters = Filters.of(exclude_bought=True, exclude_clac1=[first])
        params = [*params, ("exclude_clac1", first)]
    out = tmp_path / "top.parquet"
    # Batches of 7 and the API's own micro-batches group clients differently: rankings must not care.
    summary = write_recommendations(recommender, out, k=10, filters=filters, batch_size=7)
    table = pl.read_parquet(out)
    assert table.columns == ["client_id", "rank", "label", "clac1", "score", "bought_before"]
    assert summary.clients == recommender.n_clients and summary.rows == table.height
    expected = [
        row
        for client_id in table["client_id"].unique(maintain_order=True).to_list()
        for row in api_rows(client, client_id, [("k", 10), *params])
    ]
    assert table["client_id"].n_unique() == recommender.n_clients
    # The same labels in the same order with the same scores, to the bit: a client's forward pass does not
    # depend on the others in its batch (app/recommender.py, MIN_ROWS).
    assert table.rows() == expected


def test_batch_csv_has_the_same_rows_as_parquet(recommender: Recommender, tmp_path: Path) -> None:
    clients = [recommender.client_id_at(row) for row in range(20)]
    write_recommendations(recommender, tmp_path / "top.parquet", k=3, clients=clients)
    write_recommendations(recommender, tmp_path / "top.csv", k=3, clients=clients, fmt="csv")
    parquet = pl.read_parquet(tmp_path / "top.parquet")
    csv = pl.read_csv(tmp_path / "top.csv", schema=parquet.schema)
    assert csv.height == 60 and csv.equals(parquet)


def test_batch_gives_fewer_rows_when_the_filters_leave_fewer(
    recommender: Recommender, tmp_path: Path
) -> None:
    vocab = recommender.vocab
    small = min(range(len(vocab.clac1)), key=vocab.label_clac1.count)
    size = vocab.label_clac1.count(small)
    out = tmp_path / "small.parquet"
    write_recommendations(
        recommender,
        out,
        k=size + 3,
        clients=[recommender.client_id_at(0), recommender.client_id_at(1)],
        filters=Filters.of(clac1=[vocab.clac1[small]]),
    )
    table = pl.read_parquet(out)
    assert table.group_by("client_id").len()["len"].to_list() == [size, size]
    assert set(table["clac1"]) == {vocab.clac1[small]}


def test_clients_file_lists_clients_in_order_once(recommender: Recommender, tmp_path: Path) -> None:
    ids = [recommender.client_id_at(row) for row in (5, 2, 9)]
    listed = tmp_path / "clients.txt"
    listed.write_text(f"CLNT_ID\n{ids[0]}\n\n{ids[1]}\n{ids[2]}\n{ids[0]}\n", encoding="utf-8")
    clients = clients_to_rank(recommender, read_client_ids(listed), listed)
    out = tmp_path / "some.parquet"
    write_recommendations(recommender, out, k=2, clients=clients)
    assert pl.read_parquet(out)["client_id"].to_list() == [ids[0], ids[0], ids[1], ids[1], ids[2], ids[2]]


def test_clients_file_errors_name_the_file_line_and_ids(recommender: Recommender, tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("1\n2\nabc\n", encoding="utf-8")
    with pytest.raises(BatchInputError, match=r"bad.txt, line 3: not a client ID \(got 'abc'\)"):
        read_client_ids(bad)
    unknown = tmp_path / "unknown.txt"
    unknown.write_text(f"{recommender.client_id_at(0)}\n-5\n-6\n", encoding="utf-8")
    with pytest.raises(
        BatchInputError,
        match=r"unknown.txt: 2 client ID\(s\) neither in the artifacts' client table nor recorded: -5, -6",
    ):
        clients_to_rank(recommender, read_client_ids(unknown), unknown)


def test_a_failed_run_leaves_the_old_file_and_no_partial_one(
    recommender: Recommender, tmp_path: Path
) -> None:
    out = tmp_path / "top.parquet"
    out.write_bytes(b"yesterday's file")
    clac1 = recommender.vocab.clac1[0]
    with pytest.raises(FilterConflictError):
        write_recommendations(recommender, out, filters=Filters.of(clac1=[clac1], exclude_clac1=[clac1]))
    # A failure after some batches were written: a client nobody knows, in the third batch.
    clients = [*(recommender.client_id_at(row) for row in range(4)), -5]
    with pytest.raises(UnknownClientError):
        write_recommendations(recommender, out, clients=clients, batch_size=2)
    assert out.read_bytes() == b"yesterday's file"
    assert [path.name for path in tmp_path.iterdir()] == ["top.parquet"]


def test_unusable_output_options_are_refused_before_any_work(
    recommender: Recommender, tmp_path: Path
) -> None:
    with pytest.raises(BatchInputError, match="is a folder"):
        write_recommendations(recommender, tmp_path)
    with pytest.raises(BatchInputError, match="batch size must be at least 1"):
        write_recommendations(recommender, tmp_path / "top.parquet", batch_size=0)
    with pytest.raises(BatchInputError, match="unknown format 'xlsx'"):
        write_recommendations(recommender, tmp_path / "top.xlsx", fmt="xlsx")
    assert list(tmp_path.iterdir()) == []


def test_wdrec_recommend_command_writes_csv_and_reports_bad_filters(
    tiny_artifacts: Path, tmp_path: Path
) -> None:
    out = tmp_path / "campaign.csv"
    command = [str(WDREC), "recommend", "--artifacts", str(tiny_artifacts), "--out", str(out), "--k", "3"]
    done = subprocess.run([*command, "--exclude-bought"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    table = pl.read_csv(out)
    assert table.columns[:3] == ["client_id", "rank", "label"] and not table["bought_before"].any()
    failed = subprocess.run([*command, "--clac1", "없는 분류"], capture_output=True, text=True, timeout=300)
    assert failed.returncode == 2
    assert "wdrec recommend: error: Unknown CLAC1 categories in clac1: 없는 분류" in failed.stderr


def test_a_batch_run_imports_no_pandas_and_reports_its_peak_memory(
    tiny_artifacts: Path, tmp_path: Path
) -> None:
    """Rows go through polars to Arrow: pyarrow's own constructors import pandas (~0.3 s and ~40 MB that the
    ranking never uses). In a fresh interpreter, so that nothing another test imported counts; Parquet and
    CSV, with products and reasons."""
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from app.batch import write_recommendations\n"
        "from app.core.memory import peak_rss_mb\n"
        "from app.recommender import Recommender\n"
        "recommender = Recommender.load(Path(sys.argv[1]))\n"
        "for name in ('top.parquet', 'top.csv'):\n"
        "    out = Path(sys.argv[2]) / name\n"
        "    write_recommendations(recommender, out, k=3, products=2, reason=True, fmt=out.suffix[1:])\n"
        "print(json.dumps({'pandas': 'pandas' in sys.modules, 'peak': peak_rss_mb()}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(tiny_artifacts), str(tmp_path)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    figures = json.loads(out.stdout)
    assert figures["pandas"] is False
    assert figures["peak"] > 50
    parquet, csv = pl.read_parquet(tmp_path / "top.parquet"), pl.read_csv(tmp_path / "top.csv")
    assert parquet.columns == csv.columns and parquet.height == csv.height > 0
    assert parquet.columns[6] == "reason" and parquet["product_rank"].max() == 2
