"""The L.POINT table contracts: which columns wdrec reads from each file, their types and allowed values.

Only the columns below are read; any other column (CLAC2_NM, PD_BUY_AM, ...) and the Search files are
ignored. PD_BRA_NM (brand) and PD_NM (product name) are optional: the product tables show them when present.
Integer columns may hold thousands separators ("1,890"); they are parsed as integers. IDs are non-negative:
the loader packs (CLNT_ID, SESS_ID) into one integer session key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

GENDERS = ("F", "M")
AGES = (10, 20, 30, 40, 50, 60, 70, 80)


@dataclass(frozen=True)
class Column:
    """One column of a table: its type, whether it may be empty or absent, and its allowed values."""

    name: str
    kind: Literal["int", "str"]
    nullable: bool = False  # an empty cell is allowed (read as null)
    optional: bool = False  # the whole column may be absent
    allowed: tuple[object, ...] | None = None  # None = any value of the kind
    minimum: int | None = None  # smallest allowed integer
    max_chars: int = 200  # category names are a few words; longer is a broken export


@dataclass(frozen=True)
class TableSpec:
    """The contract of one CSV file."""

    file: str
    columns: tuple[Column, ...]

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.columns if not c.optional]


PRODUCT = TableSpec(
    "Product.csv",
    (
        Column("CLNT_ID", "int", minimum=0),
        Column("SESS_ID", "int", minimum=0),
        # Optional here: profiles without the HITS_SEQ rule (public data has no hit numbers) do not need it.
        Column("HITS_SEQ", "int", optional=True),
        Column("PD_C", "int"),
        # Free text written by shops: product names run longer than category names.
        Column("PD_BRA_NM", "str", nullable=True, optional=True, max_chars=1000),
    ),
)
SESSION = TableSpec(
    "Session.csv",
    (
        Column("CLNT_ID", "int", minimum=0),
        Column("SESS_ID", "int", minimum=0),
        Column("SESS_SEQ", "int"),
        Column("SESS_DT", "int", nullable=True, optional=True),  # YYYYMMDD
    ),
)
CUSTOM = TableSpec(
    "Custom.csv",
    (
        Column("CLNT_ID", "int", minimum=0),
        # Empty = unknown; the lpoint profile drops such clients, other profiles may keep them.
        Column("CLNT_GENDER", "str", nullable=True, allowed=GENDERS),
        Column("CLNT_AGE", "int", nullable=True, allowed=AGES),
    ),
)
MASTER = TableSpec(
    "Master.csv",
    (
        Column("PD_C", "int"),
        Column("PD_NM", "str", nullable=True, optional=True, max_chars=1000),
        Column("CLAC1_NM", "str"),
        Column("CLAC3_NM", "str"),
    ),
)
TABLES = (PRODUCT, SESSION, CUSTOM, MASTER)
