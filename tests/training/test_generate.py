from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from training.errors import ConfigError
from training.generate import generate
from training.load import load_tables
from training.preprocess import load_and_preprocess

FILES = ("Product.csv", "Session.csv", "Custom.csv", "Master.csv")


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        generate(tmp_path / name, clients=60, seed=seed)
    for file in FILES:
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()
    assert (tmp_path / "a" / "Product.csv").read_bytes() != (tmp_path / "c" / "Product.csv").read_bytes()


def test_unknown_preset_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown preset"):
        generate(tmp_path, preset="huge")


def test_category_tree_is_korean_three_levels_and_large_enough(generated_default: Path) -> None:
    master = pl.read_csv(generated_default / "Master.csv")
    assert master.columns == ["PD_C", "PD_NM", "CLAC1_NM", "CLAC2_NM", "CLAC3_NM"]
    assert master["PD_C"].is_unique().all()
    assert master["CLAC1_NM"].n_unique() >= 30
    assert master["CLAC2_NM"].n_unique() >= 120
    assert master["CLAC3_NM"].n_unique() >= 400
    # A tree: every CLAC3 has one CLAC2 parent, every CLAC2 one CLAC1 parent.
    assert master.group_by("CLAC3_NM").agg(pl.col("CLAC2_NM").n_unique())["CLAC2_NM"].max() == 1
    assert master.group_by("CLAC2_NM").agg(pl.col("CLAC1_NM").n_unique())["CLAC1_NM"].max() == 1
    assert master["CLAC1_NM"].str.contains("[가-힣]").all()
    assert master["CLAC3_NM"].str.contains(",").any()  # quoting is exercised


def test_demographics_have_the_lpoint_skew(generated_default: Path) -> None:
    custom = pl.read_csv(generated_default / "Custom.csv")
    clients = pl.read_csv(generated_default / "Session.csv")["CLNT_ID"].unique()
    assert custom.height < clients.len()  # some clients are not members
    assert custom.height > 0.8 * clients.len()
    assert 0.75 < (custom["CLNT_GENDER"] == "F").mean() < 0.95  # type: ignore[operator]
    assert set(custom["CLNT_AGE"].unique()) <= set(range(10, 90, 10))
    assert custom["CLNT_AGE"].mode().item() in (30, 40)


def test_sessions_and_hits_are_numbered_like_lpoint(generated_default: Path) -> None:
    tables = load_tables(generated_default)
    hits = tables.product.group_by("CLNT_ID", "SESS_ID").agg(pl.col("HITS_SEQ").min().alias("first"))
    assert (hits["first"] == 1).all()
    assert hits.height == tables.session.height  # every session bought something
    ordered = tables.session.sort("CLNT_ID", "SESS_SEQ")
    grows = ordered.select((pl.col("SESS_DT").diff().over("CLNT_ID").fill_null(0) >= 0).all()).item()
    assert grows
    assert ordered.select(pl.col("SESS_DT").is_between(20180401, 20180930).all()).item()
    assert tables.orphans == 0


def test_clients_rebuy_far_above_chance(generated_default: Path) -> None:
    data = load_and_preprocess(generated_default)
    popularity = np.zeros(data.vocab.n_labels)
    for labels in data.sessions["labels"]:
        popularity[labels.to_numpy()] += 1
    popularity /= popularity.sum()
    repeats, chance, total = 0, 0.0, 0
    for _cid, _g, _a, sessions, _splits in data.client_histories():
        seen: set[int] = set()
        for basket in sessions:
            if seen:
                repeats += sum(label in seen for label in basket)
                chance += len(basket) * popularity[list(seen)].sum()  # drawing from global popularity
                total += len(basket)
            seen.update(basket)
    assert repeats / total > 2 * chance / total


def test_default_leaves_enough_clients_and_labels_after_lpoint_rules(generated_default: Path) -> None:
    data = load_and_preprocess(generated_default)
    assert 300 <= data.clients.height <= 1500
    assert data.vocab.n_labels >= 400
    assert (data.sessions.group_by("CLNT_ID").len()["len"] == 10).all()
    assert data.funnel[0]["rows"] > data.funnel[1]["rows"]  # rule 1 bites: the impulse rows
