from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from tests.training.conftest import HEADERS, tiny_tables, write_lpoint
from training.cli import main
from training.errors import ConfigError, SchemaError
from training.load import detect_encoding, load_tables


def _bad_folder(tmp_path: Path, file: str, index: int, column: str, value: object) -> Path:
    """The tiny folder with one cell of one file replaced (data row `index`, 0-based)."""
    tables = tiny_tables()
    row = list(tables[file][index])
    row[HEADERS[file].index(column)] = value
    tables[file][index] = tuple(row)
    return write_lpoint(tmp_path / "bad", tables)


def test_load_tiny_folder_types_columns_and_ignores_extras(tiny_lpoint: Path) -> None:
    tables = load_tables(tiny_lpoint)
    assert tables.product.columns == [
        "CLNT_ID",
        "SESS_ID",
        "HITS_SEQ",
        "PD_C",
        "SESS_KEY",
    ]  # PD_BUY_AM ignored
    assert tables.product.schema["PD_C"] == pl.Int64
    assert tables.session.columns == ["CLNT_ID", "SESS_ID", "SESS_SEQ", "SESS_DT", "SESS_KEY"]
    # One key per (CLNT_ID, SESS_ID) pair, the same in both tables.
    assert tables.session["SESS_KEY"].n_unique() == tables.session.height
    pairs = tables.product.select("CLNT_ID", "SESS_ID", "SESS_KEY").unique()
    assert pairs["SESS_KEY"].n_unique() == pairs.height
    assert pairs.join(tables.session, on=["CLNT_ID", "SESS_ID", "SESS_KEY"], how="anti").height == 0
    assert tables.custom["CLNT_GENDER"].to_list() == ["F", "M", "M", "F"]
    assert tables.custom["CLNT_AGE"].to_list() == [30, None, 40, 20]
    assert tables.master.filter(pl.col("PD_C") == 4)["CLAC3_NM"].item() == "티셔츠,셔츠"
    assert tables.orphans == 0


def test_cp949_file_loads_the_same_as_its_utf8_twin(tiny_lpoint: Path, tmp_path: Path) -> None:
    twin = write_lpoint(tmp_path / "cp949", encoding="cp949")
    assert detect_encoding(twin / "Master.csv") == "cp949"
    assert detect_encoding(tiny_lpoint / "Master.csv") == "utf-8"
    utf8 = load_tables(tiny_lpoint)
    for encoding in (None, "cp949", "euc-kr"):
        korean = load_tables(twin, encoding=encoding)
        assert korean.master.equals(utf8.master)
        assert korean.product.equals(utf8.product)


def test_thousands_separators_and_integral_floats_parse(tmp_path: Path) -> None:
    tables = tiny_tables()
    tables["Session.csv"][0] = (1, 100, "1,001", 20180401, "1,890")
    tables["Custom.csv"][0] = (1, "F", "30.0")
    loaded = load_tables(write_lpoint(tmp_path, tables))
    assert loaded.session["SESS_SEQ"][0] == 1001
    assert loaded.custom["CLNT_AGE"][0] == 30


def test_forced_utf8_on_a_cp949_file_is_a_schema_error(tmp_path: Path) -> None:
    folder = write_lpoint(tmp_path, encoding="cp949")
    with pytest.raises(SchemaError, match=r"Master\.csv.*UTF-8"):
        load_tables(folder, encoding="utf-8")


def test_unknown_encoding_is_a_config_error(tiny_lpoint: Path) -> None:
    with pytest.raises(ConfigError, match="latin-9000"):
        load_tables(tiny_lpoint, encoding="latin-9000")


@pytest.mark.parametrize(
    ("file", "index", "column", "value", "expected"),
    [
        (
            "Product.csv",
            4,
            "PD_C",
            "abc",
            r"Product\.csv, column PD_C, row 6: not a number \(got 'abc'\); expected an integer",
        ),
        (
            "Session.csv",
            2,
            "CLNT_ID",
            "x1",
            r"Session\.csv, column CLNT_ID, row 4: not a number \(got 'x1'\)",
        ),
        (
            "Custom.csv",
            1,
            "CLNT_GENDER",
            "X",
            r"Custom\.csv, column CLNT_GENDER, row 3: unknown value \(got 'X'\); expected one of F, M",
        ),
        (
            "Custom.csv",
            2,
            "CLNT_AGE",
            35,
            r"Custom\.csv, column CLNT_AGE, row 4: unknown value \(got 35\); expected one of 10, 20",
        ),
        (
            "Master.csv",
            0,
            "CLAC3_NM",
            None,
            r"Master\.csv, column CLAC3_NM, row 2: empty value; expected a value",
        ),
        ("Master.csv", 2, "CLAC1_NM", "  ", r"Master\.csv, column CLAC1_NM, row 4: empty value"),
        ("Session.csv", 3, "SESS_ID", -5, r"Session\.csv, column SESS_ID, row 5: value too small \(got -5\)"),
    ],
)
def test_bad_value_names_file_column_row_and_value(
    tmp_path: Path, file: str, index: int, column: str, value: object, expected: str
) -> None:
    with pytest.raises(SchemaError, match=expected) as caught:
        load_tables(_bad_folder(tmp_path, file, index, column, value))
    assert (caught.value.file, caught.value.column, caught.value.row) == (file, column, index + 2)


def test_missing_file_is_named(tiny_lpoint: Path) -> None:
    (tiny_lpoint / "Custom.csv").unlink()
    with pytest.raises(SchemaError, match=r"Custom\.csv: file not found"):
        load_tables(tiny_lpoint)


def test_missing_column_is_named(tmp_path: Path) -> None:
    headers = {"Session.csv": ["CLNT_ID", "SESS_ID", "SESS_NO", "SESS_DT", "TOT_SESS_HR_V"]}
    with pytest.raises(
        SchemaError, match=r"Session\.csv, column SESS_SEQ, row 1: missing column; expected a header"
    ):
        load_tables(write_lpoint(tmp_path, headers=headers))


def test_empty_table_is_an_error(tmp_path: Path) -> None:
    tables = tiny_tables()
    tables["Custom.csv"] = []
    with pytest.raises(SchemaError, match=r"Custom\.csv: the table is empty"):
        load_tables(write_lpoint(tmp_path, tables))


def test_product_code_with_two_categories_is_an_error(tmp_path: Path) -> None:
    tables = tiny_tables()
    tables["Master.csv"].append((3, "상품 3", "의류", "의류 기본", "바지"))
    with pytest.raises(
        SchemaError, match=r"Master\.csv, column PD_C, row 8: PD_C listed twice.*\(got 3\)"
    ) as caught:
        load_tables(write_lpoint(tmp_path, tables))
    assert "식품 / 과자/스낵" in str(caught.value)


def test_same_product_listed_twice_identically_is_fine(tmp_path: Path) -> None:
    tables = tiny_tables()
    tables["Master.csv"].append(tables["Master.csv"][0])
    assert load_tables(write_lpoint(tmp_path, tables)).master.height == 6


def test_session_listed_twice_is_an_error(tmp_path: Path) -> None:
    tables = tiny_tables()
    tables["Session.csv"].append(tables["Session.csv"][0])
    with pytest.raises(SchemaError, match=r"Session\.csv, column CLNT_ID, SESS_ID, row 53: row listed twice"):
        load_tables(write_lpoint(tmp_path, tables))


def test_few_orphans_are_dropped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tables = tiny_tables()
    tables["Product.csv"] += [
        (1, 100, 9, 99, "1,000"),
        (1, 999, 1, 1, "1,000"),
    ]  # unknown PD_C, unknown session
    folder = write_lpoint(tmp_path, tables)
    with caplog.at_level(logging.WARNING, logger="training.load"):
        loaded = load_tables(folder, max_orphan_share=0.05)
    assert loaded.orphans == 2
    assert loaded.product.height == 153
    assert "dropped 2 orphan rows" in caplog.text


def test_orphans_past_the_share_are_an_error(tmp_path: Path) -> None:
    tables = tiny_tables()
    tables["Product.csv"] += [(1, 100, 9, 99, "1,000"), (1, 999, 1, 1, "1,000")]
    with pytest.raises(
        SchemaError, match=r"Product\.csv, column PD_C, row 155: 2 of 155 rows \(1\.3%\) are orphans"
    ):
        load_tables(write_lpoint(tmp_path, tables))


Tables = dict[str, list[tuple[object, ...]]]
Headers = dict[str, list[str]]


def _set(file: str, index: int, column: str, value: object) -> Callable[[Tables, Headers], None]:
    def breaks(tables: Tables, _headers: Headers) -> None:
        row = list(tables[file][index])
        row[HEADERS[file].index(column)] = value
        tables[file][index] = tuple(row)

    return breaks


# One crafted bad folder per validation error: (what breaks it, the file and column the message must name).
BREAKS: dict[str, tuple[Callable[[Tables, Headers], None], str, str | None]] = {
    "missing file": (lambda t, h: t.__delitem__("Custom.csv"), "Custom.csv", None),
    "missing column": (
        lambda t, h: h.update({"Session.csv": ["CLNT_ID", "SESS_ID", "SEQ", "SESS_DT", "TOT_SESS_HR_V"]}),
        "Session.csv",
        "SESS_SEQ",
    ),
    "non-numeric ID": (_set("Product.csv", 0, "SESS_ID", "?"), "Product.csv", "SESS_ID"),
    "empty table": (lambda t, h: t.update({"Master.csv": []}), "Master.csv", None),
    "PD_C with two categories": (
        lambda t, h: t["Master.csv"].append((1, "상품 1", "가전", "가전 기본", "청소기")),
        "Master.csv",
        "PD_C",
    ),
    "orphans past the share": (
        lambda t, h: t["Product.csv"].extend([(1, 100, 9, 99, "1,000")] * 3),
        "Product.csv",
        "PD_C",
    ),
    "unknown gender": (_set("Custom.csv", 0, "CLNT_GENDER", "X"), "Custom.csv", "CLNT_GENDER"),
    "age not a decade": (_set("Custom.csv", 0, "CLNT_AGE", 90), "Custom.csv", "CLNT_AGE"),
}


@pytest.mark.parametrize("case", list(BREAKS))
def test_cli_preprocess_on_bad_data_exits_2_names_file_and_column_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    breaks, file, column = BREAKS[case]
    tables, headers = tiny_tables(), {name: list(header) for name, header in HEADERS.items()}
    breaks(tables, headers)
    folder = write_lpoint(tmp_path / "bad", tables, headers=headers)
    out = tmp_path / "processed"
    status = main(["preprocess", "--data", str(folder), "--out", str(out)])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith(f"wdrec preprocess: error: {file}")
    if column is not None:
        assert f"column {column}, row " in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad"]  # no output, no temp folder
