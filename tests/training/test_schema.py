from __future__ import annotations

from pathlib import Path

from tests.training.conftest import write_csv
from training.dataset import Vocabulary
from training.load import read_table
from training.schema import AGES, CUSTOM, GENDERS, MASTER, PRODUCT, SESSION, TABLES


def test_required_columns_are_the_seed_columns() -> None:
    assert PRODUCT.required == ["CLNT_ID", "SESS_ID", "PD_C"]  # HITS_SEQ only for profiles that use it
    assert SESSION.required == ["CLNT_ID", "SESS_ID", "SESS_SEQ"]
    assert CUSTOM.required == ["CLNT_ID", "CLNT_GENDER", "CLNT_AGE"]
    assert MASTER.required == ["PD_C", "CLAC1_NM", "CLAC3_NM"]
    assert [t.file for t in TABLES] == ["Product.csv", "Session.csv", "Custom.csv", "Master.csv"]


def test_ids_are_non_negative_integers_everywhere() -> None:
    ids = [c for t in TABLES for c in t.columns if c.name in ("CLNT_ID", "SESS_ID")]
    assert len(ids) == 5
    assert all(c.kind == "int" and c.minimum == 0 and not c.nullable for c in ids)


def test_demographic_codes_match_the_vocabulary_indices() -> None:
    vocab = Vocabulary(labels=[], label_clac1=[], clac1=[])
    assert vocab.genders == ["?", *GENDERS]
    assert vocab.ages == [0, *AGES]


def test_absent_optional_column_is_left_out_and_extras_ignored(tmp_path: Path) -> None:
    write_csv(tmp_path / "Session.csv", ["SESS_ID", "CLNT_ID", "SESS_SEQ", "CITY_NM"], [[7, 1, 3, "서울"]])
    frame = read_table(tmp_path, SESSION)
    assert frame.columns == ["CLNT_ID", "SESS_ID", "SESS_SEQ"]
    assert frame.row(0) == (1, 7, 3)
