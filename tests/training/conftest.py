"""Shared fixtures: tiny L.POINT folders written by hand, small enough that every answer can be counted."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pytest

from training.generate import generate

HEADERS = {
    "Product.csv": ("CLNT_ID", "SESS_ID", "HITS_SEQ", "PD_C", "PD_BUY_AM"),
    "Session.csv": ("CLNT_ID", "SESS_ID", "SESS_SEQ", "SESS_DT", "TOT_SESS_HR_V"),
    "Custom.csv": ("CLNT_ID", "CLNT_GENDER", "CLNT_AGE"),
    "Master.csv": ("PD_C", "PD_NM", "CLAC1_NM", "CLAC2_NM", "CLAC3_NM"),
}
# PD_C -> (CLAC1, CLAC3): products 1 and 2 share a label; names hold '/' and ',' to exercise CSV quoting.
TINY_MASTER = {
    1: ("식품", "우유"),
    2: ("식품", "우유"),
    3: ("식품", "과자/스낵"),
    4: ("의류", "티셔츠,셔츠"),
    5: ("의류", "바지"),
    6: ("가전", "청소기"),
}


def write_csv(
    path: Path, header: Sequence[str], rows: Iterable[Sequence[object]], *, encoding: str = "utf-8"
) -> None:
    """One CSV file with proper quoting; None becomes an empty cell."""
    with path.open("w", encoding=encoding, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(["" if v is None else v for v in row] for row in rows)


Row = tuple[object, ...]


def client_sessions(
    client: int, baskets: Sequence[Sequence[int]], *, first_seq: int = 1
) -> tuple[list[Row], list[Row]]:
    """Product and Session rows of one client: session k (SESS_SEQ first_seq + k) buys baskets[k]'s PD_Cs.

    The first PD_C of a basket gets HITS_SEQ 1 (so rule 1 drops it); SESS_ID = 100 * client + k.
    """
    products: list[Row] = []
    sessions: list[Row] = []
    for k, basket in enumerate(baskets):
        sess_id = 100 * client + k
        sessions.append((client, sess_id, first_seq + k, 20180401 + k, "1,890"))
        products.extend((client, sess_id, hit + 1, pd_c, "39,000") for hit, pd_c in enumerate(basket))
    return products, sessions


def tiny_tables() -> dict[str, list[tuple[object, ...]]]:
    """A folder whose funnel under the lpoint profile is counted by hand in test_preprocess.py.

    client 1 (F, 30): 11 sessions [6, 1, 3] -> after rule 1 {우유, 과자/스낵}; the oldest is capped away.
    client 2 (not in Custom): 10 sessions [6, 1, 4] -> dropped by rule 3.
    client 3 (M, no age): 10 sessions [6, 4, 5] -> dropped by rule 3 (age).
    client 4 (M, 40): 10 sessions [6, 4, 5], but one is [3, 1, 2] (one label after rule 1) -> 9 -> rule 5.
    client 5 (F, 20): 10 sessions [1, 3, 4]; rule 1 drops 우유 (HITS_SEQ 1) -> {과자/스낵, 티셔츠,셔츠}.
    """
    plan = {
        1: [[6, 1, 3]] * 11,
        2: [[6, 1, 4]] * 10,
        3: [[6, 4, 5]] * 10,
        4: [[6, 4, 5]] * 5 + [[3, 1, 2]] + [[6, 4, 5]] * 4,
        5: [[1, 3, 4]] * 10,
    }
    product: list[tuple[object, ...]] = []
    session: list[tuple[object, ...]] = []
    for client, baskets in plan.items():
        rows, sessions = client_sessions(client, baskets)
        product += rows
        session += sessions
    return {
        "Product.csv": product,
        "Session.csv": session,
        "Custom.csv": [(1, "F", 30), (3, "M", None), (4, "M", 40), (5, "F", 20)],
        "Master.csv": [(pd, f"상품 {pd}", c1, f"{c1} 기본", c3) for pd, (c1, c3) in TINY_MASTER.items()],
    }


def write_lpoint(
    folder: Path,
    tables: dict[str, list[tuple[object, ...]]] | None = None,
    *,
    headers: Mapping[str, Sequence[str]] | None = None,
    encoding: str = "utf-8",
) -> Path:
    """Write an L.POINT folder (default: tiny_tables()); `headers` overrides a file's header."""
    folder.mkdir(parents=True, exist_ok=True)
    tables = tiny_tables() if tables is None else tables
    for name, rows in tables.items():
        write_csv(folder / name, (headers or {}).get(name, HEADERS[name]), rows, encoding=encoding)
    return folder


@pytest.fixture
def tiny_lpoint(tmp_path: Path) -> Path:
    """A valid hand-made L.POINT folder (see tiny_tables)."""
    return write_lpoint(tmp_path / "lpoint")


@pytest.fixture(scope="session")
def generated_default(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded default data set (seed 42), generated once per test session."""
    out = tmp_path_factory.mktemp("generated")
    generate(out)
    return out
