"""products=N on GET /recommend and POST /score, checked against the artifact set's own product tables."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.main import create_app
from tests.app.api.routes.test_recommend import assert_error
from training.artifacts import ArtifactSet
from training.products import FILES as PRODUCT_FILES
from training.products import ProductTables

pytestmark = pytest.mark.slow  # needs the session's trained artifacts
SOURCE_ORDER = {"bought": 0, "segment": 1, "label": 2}


@pytest.fixture(scope="module")
def tables(artifacts: ArtifactSet) -> ProductTables:
    assert artifacts.products is not None
    return artifacts.products


def own_products(artifacts: ArtifactSet, tables: ProductTables, client_id: int) -> pl.DataFrame:
    """The client's rows of product_clients.parquet with PD_C and label name, in the table's order."""
    row = artifacts.clients["CLNT_ID"].to_list().index(client_id)
    catalogue = tables.catalogue.with_row_index("product").select(pl.col("product").cast(pl.Int32), "PD_C")
    return (
        tables.clients.filter(pl.col("row") == row)
        .join(catalogue, on="product", maintain_order="left")
        .with_columns(name=pl.col("label").map_elements(lambda i: artifacts.vocab.labels[i], pl.String))
    )


def check_lists(body: dict[str, Any], tables: ProductTables, artifacts: ArtifactSet, n: int) -> None:
    """Each label's products: at most n, all of that label, each once, sources in order, scores falling."""
    label_of = dict(zip(tables.catalogue["PD_C"], tables.catalogue["label"], strict=True))
    for item in body["recommendations"]:
        products = item["products"]
        assert 0 < len(products) <= n
        assert {artifacts.vocab.labels[label_of[p["pd_c"]]] for p in products} == {item["label"]}
        assert len({p["pd_c"] for p in products}) == len(products)
        ranks = [SOURCE_ORDER[p["source"]] for p in products]
        assert ranks == sorted(ranks)
        scores = [p["score"] for p in products]
        assert scores == sorted(scores, reverse=True) and all(0 < s <= item["score"] for s in scores)


def test_recommend_products_puts_the_clients_own_first(
    client: TestClient, known_client: int, artifacts: ArtifactSet, tables: ProductTables
) -> None:
    body = client.get(f"/recommend/{known_client}", params={"k": 10, "products": 3}).json()
    check_lists(body, tables, artifacts, 3)
    own = own_products(artifacts, tables, known_client)
    for item in body["recommendations"]:
        mine = own.filter(pl.col("name") == item["label"]).head(3)
        bought = [p for p in item["products"] if p["source"] == "bought"]
        assert [p["pd_c"] for p in bought] == mine["PD_C"].to_list()
        assert [p["sessions"] for p in bought] == mine["sessions"].to_list()
        assert [p["days_ago"] for p in bought] == mine["days_ago"].to_list()
        assert all(p["name"] and p["brand"] for p in item["products"])  # the generator writes both
    assert any(item["products"][0]["source"] == "bought" for item in body["recommendations"])


def test_recommend_exclude_bought_products_leaves_them_out(
    client: TestClient, known_client: int, artifacts: ArtifactSet, tables: ProductTables
) -> None:
    params = {"k": 10, "products": 5, "exclude_bought_products": True}
    body = client.get(f"/recommend/{known_client}", params=params).json()
    check_lists(body, tables, artifacts, 5)
    own = set(own_products(artifacts, tables, known_client)["PD_C"].to_list())
    assert not any(p["pd_c"] in own for item in body["recommendations"] for p in item["products"])


def test_recommend_without_products_has_none_and_labels_are_unchanged(
    client: TestClient, known_client: int
) -> None:
    plain = client.get(f"/recommend/{known_client}", params={"k": 5}).json()
    assert all(item["products"] is None for item in plain["recommendations"])
    with_products = client.get(f"/recommend/{known_client}", params={"k": 5, "products": 2}).json()
    strip = [{k: v for k, v in item.items() if k != "products"} for item in with_products["recommendations"]]
    assert strip == [{k: v for k, v in item.items() if k != "products"} for item in plain["recommendations"]]


@pytest.mark.parametrize("products", ["-1", "21", "two"])
def test_recommend_products_out_of_range_returns_422(
    client: TestClient, known_client: int, products: str
) -> None:
    response = client.get(f"/recommend/{known_client}", params={"products": products})
    assert_error(response, 422, "validation_error")


def test_score_products_are_best_sellers_of_the_segment_and_label(
    client: TestClient, artifacts: ArtifactSet, tables: ProductTables
) -> None:
    body = {"basket": artifacts.vocab.labels[:2], "gender": "F", "age": 30, "k": 5, "products": 4}
    answer = client.post("/score", json=body).json()
    check_lists(answer, tables, artifacts, 4)
    sources = {p["source"] for item in answer["recommendations"] for p in item["products"]}
    assert sources <= {"segment", "label"}
    assert_error(client.post("/score", json={**body, "products": "4"}), 422, "validation_error")
    assert_error(client.post("/score", json={**body, "products": 21}), 422, "validation_error")


def test_version_without_product_tables_answers_409_for_products(
    tiny_artifacts: Path, tmp_path: Path, known_client: int
) -> None:
    version = Path(shutil.copytree((tiny_artifacts / "current").resolve(), tmp_path / "old"))
    metadata = json.loads((version / "metadata.json").read_text())
    del metadata["products"]
    for name in PRODUCT_FILES:
        del metadata["files"][name]
        (version / name).unlink()
    (version / "metadata.json").write_text(json.dumps(metadata))
    with TestClient(create_app(Settings(artifacts_dir=version))) as old:
        assert old.get(f"/recommend/{known_client}").status_code == 200
        error = assert_error(old.get(f"/recommend/{known_client}?products=3"), 409, "products_unavailable")
        assert metadata["version"] in error["message"]
        assert_error(old.post("/score", json={"gender": "F", "products": 1}), 409, "products_unavailable")
