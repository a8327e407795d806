"""`wdrec recommend --products N`: each label's products as GET /recommend ranks them, one row per product."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from fastapi.testclient import TestClient

from app.batch import write_recommendations
from app.recommender import Recommender
from training.artifacts import ArtifactSet
from training.products import FILES as PRODUCT_FILES

pytestmark = pytest.mark.slow  # needs the session's trained artifacts

WDREC = Path(sys.executable).with_name("wdrec")
PRODUCT_COLUMNS = ["pd_c", "product_name", "brand", "product_source", "product_score"]


@pytest.fixture(scope="module")
def recommender(artifacts: ArtifactSet) -> Recommender:
    return Recommender(artifacts)


def test_batch_products_are_the_apis_for_every_label(
    client: TestClient, recommender: Recommender, tmp_path: Path
) -> None:
    out = tmp_path / "top.parquet"
    write_recommendations(recommender, out, k=5, products=2, exclude_bought_products=True, batch_size=7)
    table = pl.read_parquet(out)
    assert table.columns[:6] == ["client_id", "rank", "label", "clac1", "score", "bought_before"]
    for client_id in table["client_id"].unique().sort().to_list()[:12]:
        params = {"k": 5, "products": 2, "exclude_bought_products": True}
        body = client.get(f"/recommend/{client_id}", params=params).json()
        # A label left without products (the client bought them all) is one row without a product.
        expected = [
            (item["rank"], p["pd_c"], p["name"], p["brand"], p["source"], p["score"])
            for item in body["recommendations"]
            for p in item["products"]
            or [{"pd_c": None, "name": None, "brand": None, "source": None, "score": None}]
        ]
        rows = table.filter(pl.col("client_id") == client_id).select("rank", *PRODUCT_COLUMNS).rows()
        assert [r[:5] for r in rows] == [e[:5] for e in expected]
        scored = [(r[5], e[5]) for r, e in zip(rows, expected, strict=True) if e[5] is not None]
        assert [r for r, _ in scored] == pytest.approx([e for _, e in scored], rel=1e-6)
        assert "bought" not in {r[4] for r in rows}
    per_label = table.group_by("client_id", "rank", maintain_order=True).agg(pl.len(), pl.col("product_rank"))
    assert per_label["len"].max() <= 2
    # a label whose only products the client bought keeps one row, without a product
    for ranks in per_label["product_rank"].to_list():
        assert ranks in ([None], list(range(1, len(ranks) + 1)))


def test_wdrec_recommend_products_csv_and_errors(tiny_artifacts: Path, tmp_path: Path) -> None:
    out = tmp_path / "top.csv"
    command = [str(WDREC), "recommend", "--artifacts", str(tiny_artifacts), "--out", str(out), "--k", "3"]
    subprocess.run([*command, "--products", "1"], check=True, capture_output=True)
    table = pl.read_csv(out)
    assert table.columns[-6:] == ["product_rank", *PRODUCT_COLUMNS]
    assert table.group_by("client_id").len()["len"].max() <= 3
    bad = subprocess.run([*command, "--products", "21"], capture_output=True, text=True)
    assert bad.returncode == 2 and "products must be between 0 and 20" in bad.stderr
    # a version trained before product tables existed: one clear line, no file written
    old = Path(shutil.copytree((tiny_artifacts / "current").resolve(), tmp_path / "old"))
    metadata = json.loads((old / "metadata.json").read_text())
    del metadata["products"]
    for name in PRODUCT_FILES:
        del metadata["files"][name]
    (old / "metadata.json").write_text(json.dumps(metadata))
    missing = tmp_path / "none.csv"
    refused = subprocess.run(
        [str(WDREC), "recommend", "--artifacts", str(old), "--out", str(missing), "--products", "1"],
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 2 and "has no product tables" in refused.stderr
    assert not missing.exists()
