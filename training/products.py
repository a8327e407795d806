"""Product tables: the products each CLAC3 label holds, and what serving needs to rank them for one client.

`wdrec train` builds them from the validated tables (every Product row of the data window, after the
profile's HITS_SEQ rule) and stores them in the artifact set as four uncompressed Arrow IPC files, one
record batch each, that serving memory-maps: its numeric columns are read in place, without a copy, and the
pages are shared by every worker process. A product's popularity is the number of sessions (client, SESS_ID)
that bought it; a client's count is the same, over their own sessions, and their `weight` of a product is
those sessions decayed by age: each weighs 0.5 ^ (days before the client's newest session / HALF_LIFE_DAYS),
or 0.5 ^ (sessions before it / HALF_LIFE_SESSIONS) where a date is missing (TIFU-KNN's idea, in days).
`product` in every table is a row index of the catalogue.

    products.arrow            the catalogue, one row per product sold in the window: PD_C i64, PD_NM str,
                              brand str (both null when the export has none), label i32 (vocabulary id; null
                              when its CLAC3 is not in the model's vocabulary), sessions i32; sorted by
                              label, sessions (descending), PD_C
    product_clients.arrow     each known client's products: row i32 (of clients.parquet), product i32,
                              label i32, sessions i32, last_seq i64 (SESS_SEQ of the newest purchase),
                              days_ago i32 (before `as_of`; null without SESS_DT), weight f32, and
                              label_weight f32 (the same decay over the client's sessions that bought
                              anything of the label); sorted by row, label, then the client's own order:
                              weight (descending), sessions (descending), newest first, PD_C
    product_segments.arrow    segment i16 (gender code * number of age codes + age code), label i32,
                              product i32, sessions i32: each (segment, label)'s TOP_PRODUCTS best sellers
                              among that segment's clients, best first
    product_labels.arrow      label i32, product i32, sessions i32: each label's TOP_PRODUCTS best sellers

Only products of labels in the vocabulary enter the three ranking tables; the catalogue lists every product
sold (the PD_C -> label mapping of the whole window). Versions written before the IPC files hold the same
tables as Parquet (LEGACY_FILES, without `weight`: their own products weigh their sessions); they still load.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.ipc

from training.dataset import Vocabulary
from training.load import Tables
from training.preprocess import demographic_codes

TOP_PRODUCTS = 20  # best sellers kept per label and per (segment, label): the most `products=` may ask
# The own products' recency decay, chosen by the two-stage product ranking's validation NDCG@10 on The
# Complete Journey (bench/products.py; see the figures in results/products.md).
# Validation NDCG@10 (20 labels, prior weight 1, sharpness 4; app/products.py): 60 days 0.1935, 120 days
# 0.1932, no decay 0.1920; the same data without dates: 4 sessions 0.1872, 8 sessions 0.1914, no decay 0.1920.
HALF_LIFE_DAYS = 60.0
HALF_LIFE_SESSIONS = math.inf  # without dates, purchases are counted, not decayed
FORMAT = "arrow-ipc"  # metadata's products["format"]; absent: the Parquet files of LEGACY_FILES
TABLES = ("products", "product_clients", "product_segments", "product_labels")
FILES = tuple(f"{name}.arrow" for name in TABLES)
LEGACY_FILES = tuple(f"{name}.parquet" for name in TABLES)
EPOCH = dt.date(1970, 1, 1)


def files_of(summary: dict[str, Any]) -> tuple[str, ...]:
    """The file names of the tables metadata's "products" entry `summary` describes."""
    return FILES if summary.get("format") == FORMAT else LEGACY_FILES


@dataclass(frozen=True)
class ProductTables:
    """The four tables of the module docstring, and the date `days_ago` counts back from."""

    catalogue: pl.DataFrame
    clients: pl.DataFrame
    segments: pl.DataFrame
    labels: pl.DataFrame
    as_of: int | None  # YYYYMMDD: the newest SESS_DT of the window; None when the data has no dates

    def save(self, folder: Path) -> None:
        """Write the four IPC files into `folder` (the artifact writer handles atomicity)."""
        for name, frame in zip(FILES, self._frames(), strict=True):
            table = frame.to_arrow(compat_level=pl.CompatLevel.newest()).combine_chunks()
            with pa.OSFile(str(folder / name), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table, max_chunksize=max(table.num_rows, 1))  # one batch: one array each

    @classmethod
    def load(cls, folder: Path, summary: dict[str, Any]) -> ProductTables:
        """The files `save` wrote, memory-mapped (Parquet ones of an older version are read into memory);
        `summary` is the metadata entry `summary()` returned."""
        if summary.get("format") == FORMAT:
            catalogue, clients, segments, labels = (_mapped(folder / name) for name in FILES)
        else:
            catalogue, clients, segments, labels = (pl.read_parquet(folder / name) for name in LEGACY_FILES)
            clients = _with_session_weights(clients)
        return cls(catalogue, clients, segments, labels, as_of=summary.get("as_of"))

    def summary(self) -> dict[str, Any]:
        """metadata.json's "products" entry: row counts, `as_of`, TOP_PRODUCTS, the file format."""
        rows = {name: frame.height for name, frame in zip(FILES, self._frames(), strict=True)}
        return {"as_of": self.as_of, "top_products": TOP_PRODUCTS, "rows": rows, "format": FORMAT}

    def _frames(self) -> tuple[pl.DataFrame, ...]:
        return (self.catalogue, self.clients, self.segments, self.labels)


def _with_session_weights(clients: pl.DataFrame) -> pl.DataFrame:
    """Client products of a version without weights: each weighs its sessions, a label its largest count
    (its sessions are not stored; at least one product was in each)."""
    weight = pl.col("sessions").cast(pl.Float32)
    return clients.with_columns(weight=weight, label_weight=weight.max().over("row", "label"))


def _mapped(path: Path) -> pl.DataFrame:
    """An IPC file `save` wrote as a DataFrame over the memory-mapped file (numeric columns not copied)."""
    with pa.memory_map(str(path)) as source:
        table = pa.ipc.open_file(source).read_all()
    return pl.DataFrame(pl.from_arrow(table, rechunk=False))


def purchases(tables: Tables, *, drop_first_hit: bool) -> pl.DataFrame:
    """One row per (session, product) bought: CLNT_ID, SESS_KEY, PD_C, gender and age codes of the buyer (0
    when unknown or not in Custom); sorted by SESS_KEY, PD_C."""
    rows = tables.product
    if drop_first_hit:
        rows = rows.filter(pl.col("HITS_SEQ") != 1)
    # Sorting, then dropping repeats of the row before, is several times faster than a hashed unique.
    rows = rows.select("CLNT_ID", "SESS_KEY", "PD_C").sort("SESS_KEY", "PD_C")
    repeat = (pl.col("SESS_KEY") == pl.col("SESS_KEY").shift()) & (pl.col("PD_C") == pl.col("PD_C").shift())
    buyers = tables.custom.select("CLNT_ID", *demographic_codes())
    return (
        rows.filter(~repeat.fill_null(False))
        .join(buyers, on="CLNT_ID", how="left", maintain_order="left")
        .with_columns(pl.col("gender", "age").fill_null(0))
    )


def with_dates(bought: pl.DataFrame, tables: Tables) -> pl.DataFrame:
    """`bought` with each session's SESS_SEQ and day (days since 1970; null without SESS_DT)."""
    sessions = tables.session.select("SESS_KEY", "SESS_SEQ", "SESS_DT")
    joined = bought.join(sessions, on="SESS_KEY", maintain_order="left")
    return joined.with_columns(day=_day(pl.col("SESS_DT"))).drop("SESS_DT")


def brands(tables: Tables) -> pl.DataFrame:
    """PD_C -> brand: the PD_BRA_NM of the product's first row that has one (sorted by session)."""
    if "PD_BRA_NM" not in tables.product.columns:
        return pl.DataFrame(schema={"PD_C": pl.Int64, "brand": pl.String})
    # Grouping integers, then gathering one string per product, avoids hashing millions of strings.
    first = (
        tables.product.select("PD_C", row=pl.int_range(pl.len()), named=pl.col("PD_BRA_NM").is_not_null())
        .filter("named")
        .group_by("PD_C")
        .agg(pl.col("row").first())
    )
    return first.select("PD_C", brand=tables.product["PD_BRA_NM"].gather(first["row"]))


def build_catalogue(
    bought: pl.DataFrame, *, master: pl.DataFrame, brand: pl.DataFrame, vocab: Vocabulary
) -> pl.DataFrame:
    """The catalogue of the products in `bought` (see the module docstring)."""
    label_of = pl.DataFrame(
        {"CLAC3_NM": vocab.labels, "label": range(vocab.n_labels)}, schema_overrides={"label": pl.Int32}
    )
    name = pl.col("PD_NM") if "PD_NM" in master.columns else pl.lit(None, dtype=pl.String)
    names = master.select("PD_C", "CLAC3_NM", PD_NM=name)
    return (
        bought.group_by("PD_C")
        .agg(sessions=pl.len().cast(pl.Int32))
        .join(names, on="PD_C", how="left")
        .join(label_of, on="CLAC3_NM", how="left")
        .join(brand, on="PD_C", how="left")
        .select("PD_C", "PD_NM", "brand", "label", "sessions")
        .sort("label", "sessions", "PD_C", descending=[False, True, False], nulls_last=True)
    )


def rank_tables(
    catalogue: pl.DataFrame,
    *,
    popular: pl.DataFrame,
    own: pl.DataFrame,
    client_ids: Sequence[int],
    n_ages: int,
    as_of: int | None,
) -> ProductTables:
    """The ranking tables: best sellers of `popular` purchases (as `purchases` returns them), clients' own
    products from `own` (the same, `with_dates`); `client_ids` in the artifact's client-table order."""
    index = catalogue.select("PD_C", "label", product=pl.int_range(pl.len(), dtype=pl.Int32)).filter(
        pl.col("label").is_not_null()
    )
    popular = popular.join(index, on="PD_C").with_columns(
        segment=(pl.col("gender") * n_ages + pl.col("age")).cast(pl.Int16)
    )
    return ProductTables(
        catalogue=catalogue,
        clients=_client_products(own.join(index, on="PD_C"), client_ids, as_of),
        segments=_best_sellers(popular, ["segment", "label"]),
        labels=_best_sellers(popular, ["label"]),
        as_of=as_of,
    )


def build_product_tables(
    tables: Tables, vocab: Vocabulary, *, client_ids: Sequence[int], drop_first_hit: bool
) -> ProductTables:
    """`wdrec train`'s product tables: every purchase of the window ranks best sellers and the known
    clients' own products."""
    bought = purchases(tables, drop_first_hit=drop_first_hit)
    catalogue = build_catalogue(bought, master=tables.master, brand=brands(tables), vocab=vocab)
    last = tables.session["SESS_DT"].max()
    own = bought.filter(pl.col("CLNT_ID").is_in(pl.Series(client_ids, dtype=pl.Int64).implode()))
    return rank_tables(
        catalogue,
        popular=bought,
        own=with_dates(own, tables),
        client_ids=client_ids,
        n_ages=len(vocab.ages),
        as_of=None if last is None else int(last),  # type: ignore[arg-type]
    )


def _day(yyyymmdd: pl.Expr) -> pl.Expr:
    """YYYYMMDD integers as days since 1970-01-01 (Int32); null, or no such day, is null (days unknown)."""
    return yyyymmdd.cast(pl.String).str.to_date("%Y%m%d", strict=False).cast(pl.Int32)


def _best_sellers(popular: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """Per `keys` group, its TOP_PRODUCTS products by sessions bought (ties: the lower catalogue row)."""
    return (
        popular.group_by(*keys, "product")
        .agg(sessions=pl.len().cast(pl.Int32))
        .sort(*keys, "sessions", "product", descending=[False] * len(keys) + [True, False])
        .filter(pl.int_range(pl.len()).over(keys) < TOP_PRODUCTS)
        .select(*keys, "product", "sessions")
    )


def _client_products(own: pl.DataFrame, client_ids: Sequence[int], as_of: int | None) -> pl.DataFrame:
    rows = pl.DataFrame(
        {"CLNT_ID": client_ids, "row": range(len(client_ids))},
        schema={"CLNT_ID": pl.Int64, "row": pl.Int32},
    )
    today = None if as_of is None else (dt.datetime.strptime(str(as_of), "%Y%m%d").date() - EPOCH).days
    newest_day, newest_seq = pl.col("day").max().over("row"), pl.col("SESS_SEQ").max().over("row")
    halves = (
        pl.when(pl.col("day").is_not_null() & newest_day.is_not_null())
        .then((newest_day - pl.col("day")) / HALF_LIFE_DAYS)
        .otherwise((newest_seq - pl.col("SESS_SEQ")) / HALF_LIFE_SESSIONS)
    )
    bought = own.join(rows, on="CLNT_ID").with_columns(decayed=pl.lit(0.5) ** halves)
    label_weight = (
        bought.group_by("row", "label", "SESS_KEY")
        .agg(pl.col("decayed").first())
        .group_by("row", "label")
        .agg(label_weight=pl.col("decayed").sum().cast(pl.Float32))
    )
    return (
        bought.group_by("row", "product")
        .agg(
            pl.col("label").first(),
            sessions=pl.len().cast(pl.Int32),
            last_seq=pl.col("SESS_SEQ").max(),
            days_ago=(pl.lit(today, dtype=pl.Int32) - pl.col("day").max()).cast(pl.Int32),
            weight=pl.col("decayed").sum().cast(pl.Float32),
        )
        .join(label_weight, on=["row", "label"])
        .sort(
            "row",
            "label",
            "weight",
            "sessions",
            "last_seq",
            "product",
            descending=[False, False, True, True, True, False],
        )
    )
