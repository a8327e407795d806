"""Read and validate the four L.POINT CSV files of a folder (polars), failing with a `SchemaError` that names
the file, the column, the row and the bad value, and says what was expected.

Row numbers are line numbers of the file: the header is line 1, the first data row is row 2.
Encodings: UTF-8 (with or without BOM) and CP949; by default each file's encoding is detected from its first
megabyte, or it is forced with `encoding`. Product rows whose PD_C is not in Master or whose session is not in
Session are orphans: dropped with a warning, or an error past `max_orphan_share` of the rows.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from training.errors import ConfigError, SchemaError
from training.schema import CUSTOM, MASTER, PRODUCT, SESSION, Column, TableSpec

log = logging.getLogger(__name__)

ENCODINGS = ("utf-8", "cp949")
SNIFF_BYTES = 1 << 20
HEADER_ROW = 1
FIRST_DATA_ROW = 2


@dataclass(frozen=True)
class Tables:
    """The four validated tables, with the wdrec columns only, typed (Int64 / String).

    SESS_KEY packs a session's identity, the pair (CLNT_ID, SESS_ID), into one integer: joins and group-bys
    on one integer column are several times faster than on two.
    """

    product: pl.DataFrame  # CLNT_ID, SESS_ID, PD_C, SESS_KEY (+ HITS_SEQ, PD_BRA_NM if there); by SESS_KEY
    session: pl.DataFrame  # CLNT_ID, SESS_ID, SESS_SEQ, SESS_DT (null when the file has none), SESS_KEY
    custom: pl.DataFrame  # CLNT_ID, CLNT_GENDER, CLNT_AGE
    master: pl.DataFrame  # PD_C, CLAC1_NM, CLAC3_NM (+ PD_NM if in the file), one row per PD_C
    orphans: int  # Product rows dropped: PD_C not in Master, or session not in Session


def load_tables(
    data_dir: Path, *, encoding: str | None = None, max_orphan_share: float = 0.01, need_hits: bool = True
) -> Tables:
    """Read and validate Product/Session/Custom/Master.csv in data_dir; `need_hits` requires HITS_SEQ."""
    forced = _normalise_encoding(encoding)
    product = read_table(data_dir, PRODUCT, encoding=forced)
    if need_hits and "HITS_SEQ" not in product.columns:
        raise SchemaError(
            PRODUCT.file,
            "missing column",
            column="HITS_SEQ",
            row=HEADER_ROW,
            expected="a HITS_SEQ column, or a profile without the HITS_SEQ rule",
        )
    session = read_table(data_dir, SESSION, encoding=forced)
    if "SESS_DT" not in session.columns:
        session = session.with_columns(pl.lit(None, dtype=pl.Int64).alias("SESS_DT"))
    custom = read_table(data_dir, CUSTOM, encoding=forced)
    master = _unique_products(read_table(data_dir, MASTER, encoding=forced))
    product, session = _with_session_key(product, session)
    # Sorted keys make the duplicate and orphan checks linear scans and binary searches instead of hashing.
    session_keys = session["SESS_KEY"].sort()
    if (session_keys.diff() == 0).any():
        _raise_duplicate(session, SESSION.file, "SESS_KEY", ["CLNT_ID", "SESS_ID"])
    if custom["CLNT_ID"].is_duplicated().any():
        _raise_duplicate(custom, CUSTOM.file, "CLNT_ID", ["CLNT_ID"])
    product, orphans = _drop_orphans(
        product, session_keys=session_keys, master=master, max_share=max_orphan_share
    )
    return Tables(product, session, custom, master, orphans)


def read_table(data_dir: Path, spec: TableSpec, *, encoding: str | None = None) -> pl.DataFrame:
    """One file, its spec's columns only (absent optional columns left out), typed and checked."""
    path = data_dir / spec.file
    if not path.is_file():
        raise SchemaError(
            spec.file,
            f"file not found in {data_dir}",
            expected="the four L.POINT files Product.csv, Session.csv, Custom.csv, Master.csv",
        )
    source = _utf8_source(path, encoding or detect_encoding(path))
    header = _read_csv(spec.file, source, n_rows=0).columns
    _check_delimiter(spec, header)
    for name in spec.required:
        if name not in header:
            raise SchemaError(
                spec.file,
                "missing column",
                column=name,
                row=HEADER_ROW,
                expected=f"a header holding {', '.join(spec.required)}",
            )
    columns = [c for c in spec.columns if c.name in header]
    frame = _read_typed(spec.file, source, columns).with_columns(
        _clean_text(c.name) for c in columns if c.kind == "str"
    )
    if frame.height == 0:
        raise SchemaError(spec.file, "the table is empty", expected="at least one data row")
    for column in columns:
        _check_values(spec.file, frame, column)
    return frame


def _check_delimiter(spec: TableSpec, header: list[str]) -> None:
    """A header read as one column that holds ';', tab or '|' is a file with another separator."""
    if len(header) != 1:
        return
    found = next((d for d in (";", "\t", "|") if d in header[0]), None)
    if found is not None:
        raise SchemaError(
            spec.file,
            f"wrong delimiter: the header is one column separated by {found!r}",
            row=HEADER_ROW,
            value=header[0],
            expected="comma-separated values",
        )


def _clean_text(name: str) -> pl.Expr:
    """Surrounding blanks stripped; a blank cell is an empty one (null)."""
    stripped = pl.col(name).str.strip_chars()
    return pl.when(stripped != "").then(stripped).alias(name)


def detect_encoding(path: Path) -> str:
    """'utf-8' or 'cp949', judged from the file's first megabyte (ASCII counts as UTF-8)."""
    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
    if len(head) == SNIFF_BYTES and b"\n" in head:
        head = head[: head.rindex(b"\n")]  # never judge a multi-byte character cut in half
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        utf8_error = exc
    else:
        return "utf-8"
    try:
        head.decode("cp949")
    except UnicodeDecodeError:
        bad = head[utf8_error.start : utf8_error.end]
        row = head[: utf8_error.start].count(b"\n") + 1  # where UTF-8 breaks: CP949 fails as well
        raise SchemaError(
            path.name, "cannot tell the text encoding", row=row, value=bad, expected="UTF-8 or CP949 text"
        ) from utf8_error
    return "cp949"


def _normalise_encoding(encoding: str | None) -> str | None:
    if encoding is None:
        return None
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        name = encoding
    aliases = {"utf-8": "utf-8", "utf-8-sig": "utf-8", "cp949": "cp949", "euc_kr": "cp949"}
    if name not in aliases:
        raise ConfigError(f"unknown encoding {encoding!r}; expected one of {', '.join(ENCODINGS)}")
    return aliases[name]


def _utf8_source(path: Path, encoding: str) -> Path | io.BytesIO:
    """What polars reads: the file itself when UTF-8, else its text re-encoded to UTF-8 in memory."""
    if encoding == "utf-8":
        return path
    raw = path.read_bytes()
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        row = raw[: exc.start].count(b"\n") + 1
        raise SchemaError(
            path.name,
            f"not valid {encoding.upper()} text",
            row=row,
            value=raw[exc.start : exc.end],
            expected="UTF-8 or CP949 text",
        ) from exc
    return io.BytesIO(text.encode("utf-8"))


def _read_csv(file: str, source: Path | io.BytesIO, **kwargs: object) -> pl.DataFrame:
    """pl.read_csv with polars' parse errors turned into SchemaError."""
    if isinstance(source, io.BytesIO):
        source.seek(0)
    try:
        return pl.read_csv(source, infer_schema=False, **kwargs)  # type: ignore[arg-type]
    except pl.exceptions.NoDataError as exc:
        raise SchemaError(file, "the file is empty", row=HEADER_ROW, expected="a header line") from exc
    except pl.exceptions.PolarsError as exc:
        _raise_malformed_row(file, source)
        first = str(exc).splitlines()[0]
        hint = "UTF-8 text (or pass --encoding cp949)" if "utf-8" in first else "a well-formed CSV file"
        raise SchemaError(file, f"cannot be parsed: {first}", expected=hint) from exc


def _raise_malformed_row(file: str, source: Path | io.BytesIO) -> None:
    """On polars' parse error only: find the first record Python's csv module rejects, for its line number."""
    raw = io.BytesIO(source.getvalue()) if isinstance(source, io.BytesIO) else source.open("rb")
    with io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="") as text:
        reader = csv.reader(text, strict=True)
        start = HEADER_ROW
        try:
            for _ in reader:
                start = reader.line_num + 1
        except csv.Error as exc:
            raise SchemaError(
                file, f"malformed CSV record ({exc})", row=start, expected="balanced quotes"
            ) from exc


def _read_typed(file: str, source: Path | io.BytesIO, columns: list[Column]) -> pl.DataFrame:
    """Integer columns parsed straight away when they are plain; else read as text and parsed here."""
    names = [c.name for c in columns]
    ints = {c.name: pl.Int64 for c in columns if c.kind == "int"}
    try:
        if isinstance(source, io.BytesIO):
            source.seek(0)
        return pl.read_csv(source, columns=names, schema_overrides=ints, infer_schema=False)
    except pl.exceptions.PolarsError:
        pass  # thousands separators, floats or junk: the slow path below finds out which
    frame = _read_csv(file, source, columns=names)
    return frame.with_columns(_parse_int(file, frame, name) for name in ints)


def _parse_int(file: str, frame: pl.DataFrame, name: str) -> pl.Series:
    """A text column as Int64: thousands separators and integral floats ('3.0') accepted, junk reported."""
    text = frame[name].str.strip_chars().str.replace_all(",", "", literal=True)
    text = pl.select(pl.when(text == "").then(None).otherwise(text)).to_series()
    parsed = text.cast(pl.Int64, strict=False)
    as_float = text.cast(pl.Float64, strict=False)
    integral = (as_float == as_float.round()) & (as_float.abs() < 2.0**63)  # else the cast below overflows
    parsed = pl.select(pl.coalesce(parsed, pl.when(integral).then(as_float))).to_series()
    bad = (parsed.is_null() & text.is_not_null()).arg_true()
    if len(bad):
        index = int(bad[0])
        raise SchemaError(
            file,
            "not a number",
            column=name,
            row=index + FIRST_DATA_ROW,
            value=frame[name][index],
            expected="an integer (thousands separators allowed)",
        )
    return parsed.cast(pl.Int64).alias(name)


def _check_values(file: str, frame: pl.DataFrame, column: Column) -> None:
    """Empty cells where none are allowed, and values outside the column's allowed set."""
    values = frame[column.name]
    if not column.nullable:
        _raise_first(file, column, values, values.is_null(), "empty value", "a value in every row")
    if column.minimum is not None:
        below = values < column.minimum
        _raise_first(file, column, values, below, "value too small", f"an integer >= {column.minimum}")
    if column.kind == "str":
        control = values.str.contains(r"[\x00-\x08\x0b\x0c\x0e-\x1f]").fill_null(False)
        _raise_first(file, column, values, control, "control character (NUL?) in text", "printable text")
        long = values.str.len_chars() > column.max_chars
        _raise_first(file, column, values, long, "text too long", f"at most {column.max_chars} characters")
    if column.allowed is not None:
        outside = values.is_not_null() & ~values.is_in(list(column.allowed))
        choices = ", ".join(str(v) for v in column.allowed)
        _raise_first(file, column, values, outside, "unknown value", f"one of {choices} (or empty)")


def _raise_first(
    file: str, column: Column, values: pl.Series, bad: pl.Series, message: str, expected: str
) -> None:
    rows = bad.arg_true()
    if len(rows):
        index = int(rows[0])
        raise SchemaError(
            file,
            message,
            column=column.name,
            row=index + FIRST_DATA_ROW,
            value=values[index],
            expected=expected,
        )


def _unique_products(master: pl.DataFrame) -> pl.DataFrame:
    """One row per PD_C; a PD_C listed twice with different categories is an error."""
    if not master["PD_C"].is_duplicated().any():
        return master
    conflict = master.with_row_index("row").filter(
        pl.struct("CLAC1_NM", "CLAC3_NM").n_unique().over("PD_C") > 1
    )
    if conflict.height:
        first = conflict.filter(pl.col("PD_C") == conflict["PD_C"][0]).sort("row")
        second = first.row(1, named=True)
        raise SchemaError(
            MASTER.file,
            "PD_C listed twice with different categories",
            column="PD_C",
            row=second["row"] + FIRST_DATA_ROW,
            value=second["PD_C"],
            expected=f"one category per product; row {first['row'][0] + FIRST_DATA_ROW} says "
            f"{first['CLAC1_NM'][0]} / {first['CLAC3_NM'][0]}, "
            f"this row {second['CLAC1_NM']} / {second['CLAC3_NM']}",
        )
    return master.unique("PD_C", keep="first", maintain_order=True)


def _with_session_key(product: pl.DataFrame, session: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Add SESS_KEY = CLNT_ID * span + SESS_ID to both tables (span: above every SESS_ID, so it is exact)."""
    span = max(int(product["SESS_ID"].max()), int(session["SESS_ID"].max())) + 1  # type: ignore[arg-type]
    largest = max(int(product["CLNT_ID"].max()), int(session["CLNT_ID"].max()))  # type: ignore[arg-type]
    if (largest + 1) * span >= 2**63:
        raise SchemaError(
            SESSION.file,
            "IDs too large to combine into one 64-bit session key",
            column="CLNT_ID, SESS_ID",
            value=(largest, span - 1),
            expected="CLNT_ID x SESS_ID below 9.2e18",
        )
    key = (pl.col("CLNT_ID") * span + pl.col("SESS_ID")).alias("SESS_KEY")
    return product.with_columns(key), session.with_columns(key)


def _raise_duplicate(frame: pl.DataFrame, file: str, key: str, shown: list[str]) -> None:
    index = int(frame[key].is_duplicated().arg_true()[-1])
    value = frame.row(index, named=True)
    raise SchemaError(
        file,
        "row listed twice",
        column=", ".join(shown),
        row=index + FIRST_DATA_ROW,
        value={k: value[k] for k in shown},
        expected="one row per " + " + ".join(shown),
    )


def _drop_orphans(
    product: pl.DataFrame, *, session_keys: pl.Series, master: pl.DataFrame, max_share: float
) -> tuple[pl.DataFrame, int]:
    """Product rows (returned sorted by SESS_KEY) without a Master product or a Session row: dropped, or an
    error past max_share. `session_keys` is Session's SESS_KEY, sorted."""
    ordered = product.sort("SESS_KEY")
    runs = ordered["SESS_KEY"].rle().struct.unnest()["value"]  # each session of Product once, in order
    found = session_keys.gather(session_keys.search_sorted(runs).clip(0, max(len(session_keys) - 1, 0)))
    unknown = runs.filter(found != runs).implode()
    orphan = ~pl.col("PD_C").is_in(master["PD_C"].implode()) | pl.col("SESS_KEY").is_in(unknown)
    bad = ordered.select(orphan).to_series()
    count = int(bad.sum())
    if count == 0:
        return ordered, 0
    share = count / product.height
    if share > max_share:
        _raise_orphans(product, product.select(orphan).to_series(), master=master, max_share=max_share)
    log.warning(
        "Product.csv: dropped %d orphan rows (%.2f%%): PD_C not in Master or session not in Session",
        count,
        100 * share,
    )
    return ordered.filter(~bad), count


def _raise_orphans(product: pl.DataFrame, bad: pl.Series, *, master: pl.DataFrame, max_share: float) -> None:
    """The error naming the first orphan row of the file (bad: the orphan flag of each row, in file order)."""
    count = int(bad.sum())
    index = int(bad.arg_true()[0])
    first = product.row(index, named=True)
    if first["PD_C"] not in set(master["PD_C"]):
        column, value, reason = "PD_C", first["PD_C"], "not in Master.csv"
    else:
        column, value = "SESS_ID", first["SESS_ID"]
        reason = f"client {first['CLNT_ID']}'s session not in Session.csv"
    raise SchemaError(
        PRODUCT.file,
        f"{count} of {product.height} rows ({count / product.height:.1%}) are orphans, the first: {reason}",
        column=column,
        row=index + FIRST_DATA_ROW,
        value=value,
        expected=f"at most {max_share:.1%} rows whose PD_C or session is unknown",
    )
