"""`wdrec export`: training data plus recorded sessions, read back by the training side's own loader."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import make_url

from app.db.engine import open_database
from app.export import ExportError, export
from app.store import NewSession, SessionStore
from tests.conftest import TINY_TRAINING
from training import cli
from training.artifacts import ArtifactSet, load_artifacts
from training.load import read_table
from training.preprocess import load_and_preprocess
from training.schema import CUSTOM, MASTER, PRODUCT, SESSION

pytestmark = pytest.mark.slow  # needs the session's trained artifacts

NEW_CLIENT = 900_000_002
DAY = dt.date(2026, 11, 30)


@pytest.fixture
def store(tmp_path: Path) -> SessionStore:
    return SessionStore(open_database(make_url(f"sqlite:///{tmp_path / 'state.sqlite3'}")))


def _record(
    store: SessionStore, client_id: int, session_id: str, labels: tuple[str, ...], day: dt.date
) -> None:
    store.record_session(client_id, NewSession(session_id, day, labels, None))


def test_export_appends_recorded_sessions_that_preprocessing_keeps(
    store: SessionStore, tiny_artifacts: Path, artifacts: ArtifactSet, known_client: int, tmp_path: Path
) -> None:
    data = tiny_artifacts.parent / "data"
    labels = tuple(artifacts.vocab.labels[:3])
    _record(store, known_client, "b", labels[1:], DAY)
    _record(store, known_client, "a", labels[:2], DAY - dt.timedelta(days=1))
    store.set_demographics(known_client, gender="M", age=80)
    for n in range(12):  # a new client with enough sessions for the lpoint profile's rules
        _record(store, NEW_CLIENT, f"s{n}", labels[n % 2 : n % 2 + 2], DAY - dt.timedelta(days=20 - n))
    store.set_demographics(NEW_CLIENT, gender="F", age=30)
    summary = export(store, data, tmp_path / "out")
    assert (summary.clients, summary.sessions, summary.products) == (2, 14, 28)

    before, after = (read_table(folder, SESSION) for folder in (data, tmp_path / "out"))
    assert after.height == before.height + 14
    mine = after.filter(pl.col("CLNT_ID") == known_client).sort("SESS_SEQ")
    assert mine["SESS_DT"].to_list()[-2:] == [20261129, 20261130]  # the recorded ones, oldest first, last
    assert read_table(tmp_path / "out", MASTER).equals(read_table(data, MASTER))
    custom = read_table(tmp_path / "out", CUSTOM)
    assert custom.filter(pl.col("CLNT_ID") == known_client).row(0) == (known_client, "M", 80)
    hits = read_table(tmp_path / "out", PRODUCT).filter(pl.col("CLNT_ID") == NEW_CLIENT)["HITS_SEQ"]
    assert hits.min() == 2  # not dropped as a first hit

    processed = load_and_preprocess(tmp_path / "out")
    histories = {c: sessions for c, _, _, sessions, _ in processed.client_histories()}
    ids = [artifacts.vocab.labels.index(name) for name in labels]
    assert histories[known_client][-1] == sorted(ids[1:]) and histories[known_client][-2] == sorted(ids[:2])
    assert len(histories[NEW_CLIENT]) == 10  # the profile keeps the newest 10


def test_export_replaces_the_folder_and_names_a_label_master_lacks(
    store: SessionStore, tiny_artifacts: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    export(store, tiny_artifacts.parent / "data", out)
    assert sorted(p.name for p in out.iterdir()) == ["Custom.csv", "Master.csv", "Product.csv", "Session.csv"]
    _record(store, NEW_CLIENT, "x", ("없는 라벨",), DAY)
    with pytest.raises(ExportError, match="없는 라벨"):
        export(store, tiny_artifacts.parent / "data", out)
    assert (out / "Product.csv").exists() and not list(tmp_path.glob(".out.tmp-*"))


def test_wdrec_export_then_train_learns_from_the_recorded_sessions(
    tiny_artifacts: Path, artifacts: ArtifactSet, known_client: int, tmp_path: Path
) -> None:
    database = f"sqlite:///{tmp_path / 'live.sqlite3'}"
    store = SessionStore(open_database(make_url(database)))
    _record(store, known_client, "today", tuple(artifacts.vocab.labels[:4]), DAY)
    store.close()
    out = tmp_path / "lpoint"
    assert (
        cli.main(["export", "--database", database, "--out", str(out), "--artifacts", str(tiny_artifacts)])
        == 0
    )
    train = ["train", "--data", str(out), "--artifacts", str(tmp_path / "artifacts")]
    assert cli.main([*train, *(arg for pair in TINY_TRAINING for arg in ("--set", pair))]) == 0
    retrained = load_artifacts(tmp_path / "artifacts")
    row = retrained.clients["CLNT_ID"].to_list().index(known_client)
    newest = retrained.clients["sessions"][row][-1].to_list()
    assert [retrained.vocab.labels[i] for i in newest] == sorted(
        artifacts.vocab.labels[:4], key=retrained.vocab.labels.index
    )
