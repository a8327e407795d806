"""`wdrec export`: the training data plus every recorded session, as an L.POINT folder `wdrec train` reads.

The four tables are read from the training data's folder (by default the one the served artifacts were
trained on, from their metadata) with the columns wdrec reads, and written as UTF-8 CSV with the recorded
clients added:
- Session.csv: each recorded session after the client's own, oldest first: SESS_ID and SESS_SEQ count on
  from the client's highest, SESS_DT is the recorded date;
- Product.csv: one row per product of a recorded session: the PD_C codes sent, or for a session sent as
  labels each label's lowest PD_C in Master; HITS_SEQ (when the table has it) counts from 2, because the
  seed's rule drops first hits as outliers and a recorded purchase is none;
- Custom.csv: recorded gender and age replace the training data's; clients new to it are added (empty
  cells where nothing was recorded, as for any non-member);
- Master.csv as it was.
Optional columns of the training data (PD_BRA_NM, PD_NM) are kept; recorded rows leave them empty.
The folder is written beside `out` under a temporary name and renamed into place: all of it or nothing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from app.live import LiveClient
from app.store import SessionStore
from training.errors import WdrecError
from training.folders import replace_folder
from training.load import read_table
from training.schema import CUSTOM, MASTER, PRODUCT, SESSION

log = logging.getLogger(__name__)

FIRST_RECORDED_HIT = 2  # HITS_SEQ == 1 is dropped by the lpoint profile (the seed's outlier rule)


class ExportError(WdrecError):
    """The recorded sessions cannot be written in the training data's terms (names what is missing)."""


@dataclass(frozen=True)
class ExportSummary:
    clients: int  # recorded clients
    sessions: int  # recorded sessions added
    products: int  # Product rows added


def export(store: SessionStore, data_dir: Path, out_dir: Path) -> ExportSummary:
    """Write `data_dir`'s tables plus everything `store` recorded to `out_dir` (replaced atomically)."""
    tables = {spec.file: read_table(data_dir, spec) for spec in (PRODUCT, SESSION, CUSTOM, MASTER)}
    recorded = list(store.all_clients())
    product, session, custom, master = (tables[spec.file] for spec in (PRODUCT, SESSION, CUSTOM, MASTER))
    new_sessions, new_products = _recorded_rows(recorded, session, master, hits="HITS_SEQ" in product.columns)
    tables[SESSION.file] = _append(_with_dates(session), new_sessions)
    tables[PRODUCT.file] = _append(product, new_products)
    tables[CUSTOM.file] = _custom(custom, recorded)
    _write_atomically(out_dir, tables)
    summary = ExportSummary(len(recorded), new_sessions.height, new_products.height)
    log.info(
        "exported %s: %d recorded clients, %d sessions, %d product rows added to %s",
        out_dir,
        summary.clients,
        summary.sessions,
        summary.products,
        data_dir,
    )
    return summary


def _append(table: pl.DataFrame, rows: pl.DataFrame) -> pl.DataFrame:
    """`rows` under `table`, in its columns: those `rows` lacks (optional ones: a brand...) left empty."""
    missing = [
        pl.lit(None, dtype=table.schema[name]).alias(name)
        for name in table.columns
        if name not in rows.columns
    ]
    return pl.concat([table, rows.with_columns(missing).select(table.columns)], how="vertical_relaxed")


def _with_dates(session: pl.DataFrame) -> pl.DataFrame:
    """SESS_DT is optional in Session.csv: recorded sessions have dates, so the column is always written."""
    if "SESS_DT" in session.columns:
        return session
    return session.with_columns(SESS_DT=pl.lit(None, dtype=pl.Int64))


def _label_products(master: pl.DataFrame) -> dict[str, int]:
    """Each CLAC3 name's lowest PD_C: the product a session recorded as labels is written with."""
    first = master.group_by("CLAC3_NM").agg(pl.col("PD_C").min())
    return dict(zip(first["CLAC3_NM"].to_list(), first["PD_C"].to_list(), strict=True))


def _recorded_rows(
    recorded: Iterable[LiveClient], session: pl.DataFrame, master: pl.DataFrame, *, hits: bool
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Session and Product rows of the recorded sessions (see the module docstring)."""
    last = session.group_by("CLNT_ID").agg(pl.col("SESS_ID").max(), pl.col("SESS_SEQ").max())
    last_id = dict(zip(last["CLNT_ID"].to_list(), last["SESS_ID"].to_list(), strict=True))
    last_seq = dict(zip(last["CLNT_ID"].to_list(), last["SESS_SEQ"].to_list(), strict=True))
    label_product, known = _label_products(master), set(master["PD_C"].to_list())
    sessions: dict[str, list[int | None]] = {"CLNT_ID": [], "SESS_ID": [], "SESS_SEQ": [], "SESS_DT": []}
    products: dict[str, list[int]] = {"CLNT_ID": [], "SESS_ID": [], "HITS_SEQ": [], "PD_C": []}
    for client in recorded:
        for n, item in enumerate(client.sessions, 1):
            sess_id = last_id.get(client.client_id, 0) + n
            sessions["CLNT_ID"].append(client.client_id)
            sessions["SESS_ID"].append(sess_id)
            sessions["SESS_SEQ"].append(last_seq.get(client.client_id, 0) + n)
            sessions["SESS_DT"].append(int(item.date.strftime("%Y%m%d")))
            codes = list(item.products) if item.products is not None else _codes(item.labels, label_product)
            missing = [code for code in codes if code not in known]
            if missing:
                raise ExportError(
                    f"client {client.client_id} session {item.session_id}: products {missing} are not in "
                    "Master.csv of the training data"
                )
            for hit, code in enumerate(codes, FIRST_RECORDED_HIT):
                for column, value in zip(products, (client.client_id, sess_id, hit, code), strict=True):
                    products[column].append(value)
    product_frame = pl.DataFrame(products, schema=dict.fromkeys(products, pl.Int64))
    if not hits:
        product_frame = product_frame.drop("HITS_SEQ")
    return pl.DataFrame(sessions, schema=dict.fromkeys(sessions, pl.Int64)), product_frame


def _codes(labels: Iterable[str], label_product: dict[str, int]) -> list[int]:
    missing = [label for label in labels if label not in label_product]
    if missing:
        raise ExportError(f"labels {missing} are not in Master.csv of the training data (CLAC3_NM)")
    return [label_product[label] for label in labels]


def _custom(custom: pl.DataFrame, recorded: Iterable[LiveClient]) -> pl.DataFrame:
    """Custom.csv with recorded demographics over the training data's, recorded clients added."""
    clients = list(recorded)
    update = pl.DataFrame(
        {
            "CLNT_ID": [c.client_id for c in clients],
            "gender": [c.gender for c in clients],
            "age": [c.age for c in clients],
        },
        schema={"CLNT_ID": pl.Int64, "gender": pl.String, "age": pl.Int64},
    )
    return (
        custom.join(update, on="CLNT_ID", how="full", coalesce=True)
        .select(
            "CLNT_ID",
            CLNT_GENDER=pl.coalesce("gender", "CLNT_GENDER"),
            CLNT_AGE=pl.coalesce("age", "CLNT_AGE"),
        )
        .sort("CLNT_ID")
    )


def _write_atomically(out_dir: Path, tables: dict[str, pl.DataFrame]) -> None:
    def write(stage: Path) -> None:
        stage.mkdir()
        for name, frame in tables.items():
            frame.write_csv(stage / name)
            with (stage / name).open("rb") as fh:
                os.fsync(fh.fileno())

    replace_folder(out_dir.absolute(), write)
