from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import polars as pl
import pytest

from tests.training.conftest import HEADERS, client_sessions, tiny_tables, write_lpoint
from training.dataset import ProcessedData
from training.errors import ConfigError, SchemaError
from training.load import load_tables
from training.preprocess import (
    PreprocessConfig,
    get_profile,
    load_and_preprocess,
    preprocess,
    run_preprocess,
)


def _funnel(data: ProcessedData) -> list[tuple[int, int, int]]:
    return [(s["rows"], s["sessions"], s["clients"]) for s in data.funnel]


def test_lpoint_profile_funnel_matches_hand_count(tiny_lpoint: Path) -> None:
    data = load_and_preprocess(tiny_lpoint)
    # See tiny_tables' docstring: 5 clients, 51 sessions of 3 rows each.
    assert _funnel(data) == [
        (153, 51, 5),  # loaded
        (102, 51, 5),  # 1. HITS_SEQ == 1 dropped: one row per session
        (102, 51, 5),  # 2. merged
        (82, 41, 4),  # 3. client 2 has no Custom row
        (62, 31, 3),  # 3. client 3 has no age
        (60, 30, 3),  # 4. client 4's session left with one label (우유 twice)
        (42, 21, 2),  # 5. client 4 is left with 9 sessions
        (40, 20, 2),  # 5. client 1's oldest of 11 sessions capped away
    ]
    assert data.funnel[0]["step"] == "loaded"


def test_vocabulary_sorted_by_clac1_then_clac3_and_only_used_labels(tiny_lpoint: Path) -> None:
    vocab = load_and_preprocess(tiny_lpoint).vocab
    # 바지 and 청소기 never survive the rules; 식품 < 의류 in code-point order.
    assert vocab.labels == ["과자/스낵", "우유", "티셔츠,셔츠"]
    assert vocab.clac1 == ["식품", "의류"]
    assert vocab.label_clac1 == [0, 0, 1]
    assert vocab.genders == ["?", "F", "M"]
    assert vocab.ages == [0, 10, 20, 30, 40, 50, 60, 70, 80]


def test_sessions_hold_sorted_distinct_label_ids_and_the_split(tiny_lpoint: Path) -> None:
    sessions = load_and_preprocess(tiny_lpoint).sessions
    client1 = sessions.filter(pl.col("CLNT_ID") == 1)
    assert client1["SESS_SEQ"].to_list() == list(range(2, 12))  # the 10 most recent of 11
    assert client1["position"].to_list() == list(range(10))
    assert client1["split"].to_list() == ["context"] + ["train"] * 7 + ["valid", "test"]
    assert set(map(tuple, client1["labels"].to_list())) == {(0, 1)}
    # Client 5's 우유 only ever came with HITS_SEQ 1, so rule 1 removed it.
    assert set(map(tuple, sessions.filter(pl.col("CLNT_ID") == 5)["labels"].to_list())) == {(0, 2)}
    assert sessions.schema["labels"] == pl.List(pl.Int32)
    assert sessions.schema["position"] == pl.Int32
    assert sessions["CLNT_ID"].to_list() == sorted(sessions["CLNT_ID"].to_list())


def test_clients_encode_demographics_as_vocab_indices(tiny_lpoint: Path) -> None:
    clients = load_and_preprocess(tiny_lpoint).clients
    assert clients.rows() == [(1, 1, 3), (5, 1, 2)]  # F=1; age 30 -> 3, 20 -> 2
    assert clients.schema == pl.Schema({"CLNT_ID": pl.Int64, "gender": pl.Int16, "age": pl.Int16})


def test_switched_off_rules_keep_what_they_would_drop(tiny_lpoint: Path) -> None:
    tables = load_tables(tiny_lpoint)
    config = PreprocessConfig(
        "custom",
        drop_first_hit=False,
        require_gender=False,
        require_age=False,
        min_session_items=None,
        max_client_sessions=None,
    )
    data = preprocess(tables, config)
    assert data.clients["CLNT_ID"].to_list() == [1, 2, 3, 4, 5]
    assert data.sessions.height == 51
    # Without rule 1 the HITS_SEQ 1 product (청소기) is a label; client 2's unknown demographics are index 0.
    assert "청소기" in data.vocab.labels
    assert data.clients.filter(pl.col("CLNT_ID") == 2).rows() == [(2, 0, 0)]


def test_thresholds_are_configurable(tiny_lpoint: Path) -> None:
    tables = load_tables(tiny_lpoint)
    data = preprocess(tables, PreprocessConfig("custom", min_client_sessions=9, max_client_sessions=5))
    assert sorted(data.clients["CLNT_ID"].to_list()) == [1, 4, 5]  # client 4's 9 sessions now pass
    assert data.sessions.group_by("CLNT_ID").len()["len"].to_list() == [5, 5, 5]
    assert data.funnel[-1]["step"] == "5. each client's 5 most recent sessions"


def test_min_client_sessions_off_still_applies_split_minimum(tmp_path: Path) -> None:
    tables = tiny_tables()
    rows, sessions = client_sessions(7, [[6, 1, 3]] * 2)
    tables["Product.csv"] += rows
    tables["Session.csv"] += sessions
    tables["Custom.csv"].append((7, "F", 30))
    data = preprocess(
        load_tables(write_lpoint(tmp_path, tables)), PreprocessConfig("custom", min_client_sessions=None)
    )
    assert 7 not in data.clients["CLNT_ID"].to_list()
    assert sorted(data.clients["CLNT_ID"].to_list()) == [1, 4, 5]
    assert "split minimum" in data.funnel[-2]["step"]


def test_clac3_under_two_parents_gets_the_most_frequent(tmp_path: Path) -> None:
    tables = tiny_tables()
    # 과자/스낵 now also sits under 의류 for two products, against one product under 식품.
    tables["Master.csv"] += [
        (7, "상품 7", "의류", "의류 기본", "과자/스낵"),
        (8, "상품 8", "의류", "의류 기본", "과자/스낵"),
    ]
    vocab = load_and_preprocess(write_lpoint(tmp_path, tables)).vocab
    assert vocab.labels == ["우유", "과자/스낵", "티셔츠,셔츠"]
    assert [vocab.clac1[i] for i in vocab.label_clac1] == ["식품", "의류", "의류"]


def test_completejourney_profiles_need_no_hits_or_gender(tmp_path: Path) -> None:
    tables = tiny_tables()
    tables["Product.csv"] = [(c, s, pd, amount) for c, s, _hit, pd, amount in tables["Product.csv"]]
    tables["Custom.csv"] = [(c, None, age) for c, _g, age in tables["Custom.csv"]]
    headers = {"Product.csv": [h for h in HEADERS["Product.csv"] if h != "HITS_SEQ"]}
    folder = write_lpoint(tmp_path, tables, headers=headers)
    with pytest.raises(SchemaError, match="HITS_SEQ"):
        load_and_preprocess(folder)  # the lpoint profile needs hit numbers
    capped = load_and_preprocess(folder, profile="completejourney-cap10")
    everything = load_and_preprocess(folder, profile="completejourney-all")
    assert sorted(capped.clients["CLNT_ID"].to_list()) == [1, 4, 5]  # client 3 has no age
    assert capped.sessions.filter(pl.col("CLNT_ID") == 1).height == 10
    assert everything.sessions.filter(pl.col("CLNT_ID") == 1).height == 11
    assert capped.clients["gender"].to_list() == [0, 0, 0]


def test_no_client_left_is_a_config_error(tiny_lpoint: Path) -> None:
    with pytest.raises(ConfigError, match="no client is left after the 'strict' profile's rules"):
        preprocess(load_tables(tiny_lpoint), PreprocessConfig("strict", min_client_sessions=12))


def test_unknown_profile_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown preprocessing profile 'nope'"):
        get_profile("nope")


def test_config_rejects_a_cap_below_the_split_minimum() -> None:
    with pytest.raises(ConfigError, match="max_client_sessions"):
        PreprocessConfig("custom", max_client_sessions=2)


def test_run_preprocess_writes_a_folder_that_loads_back(tiny_lpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "processed"
    data = run_preprocess(tiny_lpoint, out, profile="lpoint", encoding=None)
    assert sorted(p.name for p in out.iterdir()) == [
        "clients.parquet",
        "config.json",
        "funnel.json",
        "sessions.parquet",
        "vocab.json",
    ]
    back = ProcessedData.load(out)
    assert back.sessions.equals(data.sessions)
    assert back.vocab == data.vocab
    assert json.loads((out / "config.json").read_text()) == dataclasses.asdict(get_profile("lpoint"))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp folder left


def test_run_preprocess_replaces_an_existing_folder(tiny_lpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "processed"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    run_preprocess(tiny_lpoint, out, profile="lpoint", encoding=None)
    assert not (out / "stale.txt").exists()
    assert (out / "sessions.parquet").is_file()
