"""Product tables from a hand-made L.POINT folder whose every count is worked out in the comments."""

from pathlib import Path

import polars as pl
import pytest

from tests.training.conftest import TINY_MASTER, write_csv
from training.dataset import Vocabulary
from training.load import load_tables
from training.products import (
    HALF_LIFE_DAYS,
    HALF_LIFE_SESSIONS,
    LEGACY_FILES,
    ProductTables,
    build_product_tables,
)

# label ids of the model's vocabulary; 바지 (PD_C 5) and 청소기 (PD_C 6) are not in it
VOCAB = Vocabulary(labels=["우유", "과자/스낵", "티셔츠,셔츠"], label_clac1=[0, 0, 1], clac1=["식품", "의류"])
# client -> [(SESS_DT, [(PD_C, brand), ...]), ...]; SESS_SEQ counts from 1 in this order
PLAN: dict[int, list[tuple[int, list[tuple[int, str]]]]] = {
    1: [  # F, 30
        (20180401, [(1, "서울우유"), (3, "농심")]),
        (20180405, [(1, "서울우유"), (2, "매일")]),
        (20180410, [(2, "매일")]),
    ],
    5: [  # F, 20: PD_C 1 twice in one session counts one session
        (20180402, [(1, "서울우유"), (4, "유니클로")]),
        (20180403, [(1, "기타"), (1, "서울우유")]),
    ],
    4: [(20180401, [(2, "매일"), (5, "리바이스"), (6, "LG")])],  # M, 40
    9: [(20180401, [(2, "매일"), (4, "유니클로")])],  # not in Custom: unknown segment
}
F30, F20, M40, UNKNOWN = 1 * 9 + 3, 1 * 9 + 2, 2 * 9 + 4, 0  # gender code x 9 age codes + age code


def write_folder(folder: Path, *, hits: bool = False) -> Path:
    """The PLAN as an L.POINT folder; with `hits`, each session's first row has HITS_SEQ 1."""
    folder.mkdir()
    product, session = [], []
    for client, sessions in PLAN.items():
        for seq, (day, rows) in enumerate(sessions, 1):
            session.append((client, seq, seq, day))
            product += [(client, seq, hit, pd_c, brand) for hit, (pd_c, brand) in enumerate(rows, 1)]
    if not hits:
        product = [(c, s, 2, p, b) for c, s, _, p, b in product]
    write_csv(folder / "Product.csv", ("CLNT_ID", "SESS_ID", "HITS_SEQ", "PD_C", "PD_BRA_NM"), product)
    write_csv(folder / "Session.csv", ("CLNT_ID", "SESS_ID", "SESS_SEQ", "SESS_DT"), session)
    custom = [(1, "F", 30), (5, "F", 20), (4, "M", 40)]
    write_csv(folder / "Custom.csv", ("CLNT_ID", "CLNT_GENDER", "CLNT_AGE"), custom)
    master = [(pd, f"상품 {pd}", c1, c3) for pd, (c1, c3) in {**TINY_MASTER, 7: ("식품", "우유")}.items()]
    write_csv(folder / "Master.csv", ("PD_C", "PD_NM", "CLAC1_NM", "CLAC3_NM"), master)
    return folder


@pytest.fixture
def tables(tmp_path: Path) -> ProductTables:
    loaded = load_tables(write_folder(tmp_path / "lpoint"), need_hits=False)
    return build_product_tables(loaded, VOCAB, client_ids=[1, 4, 5], drop_first_hit=False)


def rows(frame: pl.DataFrame, *columns: str) -> list[tuple[object, ...]]:
    return list(frame.select(columns).iter_rows())


def test_catalogue_lists_products_sold_with_name_brand_label_and_sessions(tables: ProductTables) -> None:
    # PD_C 7 is in Master but never sold; sessions: 1 -> c1 x2 + c5 x2, 2 -> c1 x2 + c4 + c9, 4 -> c5 + c9
    assert rows(tables.catalogue, "PD_C", "PD_NM", "brand", "label", "sessions") == [
        (1, "상품 1", "서울우유", 0, 4),  # brand: 서울우유 on 4 rows, 기타 on 1
        (2, "상품 2", "매일", 0, 4),
        (3, "상품 3", "농심", 1, 1),
        (4, "상품 4", "유니클로", 2, 2),
        (5, "상품 5", "리바이스", None, 1),  # 바지 is not in the vocabulary: no label, still mapped
        (6, "상품 6", "LG", None, 1),
    ]


def decayed(*days_before_newest: int) -> object:
    """The weight of purchases that many days before the client's newest session."""
    return pytest.approx(sum(0.5 ** (d / HALF_LIFE_DAYS) for d in days_before_newest), rel=1e-6)


def test_client_products_count_sessions_weights_and_days_before_the_window_end(tables: ProductTables) -> None:
    assert tables.as_of == 20180410
    # rows: clients [1, 4, 5]; product: catalogue row; weight: each session decayed by its days before the
    # client's newest (client 1: 04-10, client 5: 04-03); client 1's 우유: PD_C 2 (04-05, 04-10) outweighs
    # PD_C 1 (04-01, 04-05), both bought in 2 sessions
    assert rows(tables.clients, "row", "product", "label", "sessions", "last_seq", "days_ago", "weight") == [
        (0, 1, 0, 2, 3, 0, decayed(5, 0)),
        (0, 0, 0, 2, 2, 5, decayed(9, 5)),
        (0, 2, 1, 1, 1, 9, decayed(9)),
        (1, 1, 0, 1, 1, 9, decayed(0)),  # client 4's 바지 and 청소기 have no label: left out
        (2, 0, 0, 2, 2, 7, decayed(1, 0)),
        (2, 3, 2, 1, 1, 8, decayed(1)),
    ]
    # a label's weight: the client's sessions that bought any of its products (client 1's 우유: all three)
    assert tables.clients["label_weight"].to_list() == [
        decayed(9, 5, 0),
        decayed(9, 5, 0),
        decayed(9),
        decayed(0),
        decayed(1, 0),
        decayed(1),
    ]


def test_weights_decay_by_sessions_where_dates_are_missing(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "lpoint")
    session = pl.read_csv(folder / "Session.csv").with_columns(SESS_DT=pl.lit(None, dtype=pl.Int64))
    session.write_csv(folder / "Session.csv")
    built = build_product_tables(
        load_tables(folder, need_hits=False), VOCAB, client_ids=[1], drop_first_hit=False
    )
    assert built.as_of is None
    # client 1's SESS_SEQ 1..3: PD_C 2 in sessions 2 and 3 (1 and 0 before the newest), PD_C 1 in 1 and 2
    weight = [
        0.5 ** (1 / HALF_LIFE_SESSIONS) + 1.0,
        0.5 ** (2 / HALF_LIFE_SESSIONS) + 0.5 ** (1 / HALF_LIFE_SESSIONS),
    ]
    assert rows(built.clients, "product", "days_ago", "weight")[:2] == [
        (1, None, pytest.approx(weight[0], rel=1e-6)),
        (0, None, pytest.approx(weight[1], rel=1e-6)),
    ]


def test_best_sellers_per_segment_and_label(tables: ProductTables) -> None:
    assert rows(tables.segments, "segment", "label", "product", "sessions") == [
        (UNKNOWN, 0, 1, 1),
        (UNKNOWN, 2, 3, 1),
        (F20, 0, 0, 2),
        (F20, 2, 3, 1),
        (F30, 0, 0, 2),  # tie at 2 sessions: the lower catalogue row first
        (F30, 0, 1, 2),
        (F30, 1, 2, 1),
        (M40, 0, 1, 1),
    ]
    assert rows(tables.labels, "label", "product", "sessions") == [(0, 0, 4), (0, 1, 4), (1, 2, 1), (2, 3, 2)]


def test_first_hit_rule_applies_to_products(tmp_path: Path) -> None:
    loaded = load_tables(write_folder(tmp_path / "lpoint", hits=True))
    built = build_product_tables(loaded, VOCAB, client_ids=[1], drop_first_hit=True)
    # without each session's first row: PD_C 1 only in client 5's second session, 4 in two sessions
    assert rows(built.catalogue, "PD_C", "sessions") == [(1, 1), (2, 1), (3, 1), (4, 2), (5, 1), (6, 1)]


def test_save_then_load_round_trip(tables: ProductTables, tmp_path: Path) -> None:
    tables.save(tmp_path)
    again = ProductTables.load(tmp_path, tables.summary())
    assert again.as_of == tables.as_of
    for before, after in zip(tables._frames(), again._frames(), strict=True):
        assert before.equals(after)
    assert tables.summary()["rows"]["products.arrow"] == 6


def test_loaded_numeric_columns_are_views_of_the_mapped_files(tables: ProductTables, tmp_path: Path) -> None:
    tables.save(tmp_path)
    loaded = ProductTables.load(tmp_path, tables.summary())
    for column in ("row", "product", "label", "sessions", "weight", "label_weight"):
        series = loaded.clients[column]
        assert series.n_chunks() == 1
        view = series.to_arrow().to_numpy(zero_copy_only=True)  # raises if it had to copy
        assert not view.flags.writeable  # the mapped file, read-only


def test_a_version_with_parquet_tables_still_loads(tables: ProductTables, tmp_path: Path) -> None:
    # the tables as the first product-table versions wrote them: Parquet, no weight, no "format"
    clients = tables.clients.drop("weight")
    for name, frame in zip(
        LEGACY_FILES, (tables.catalogue, clients, tables.segments, tables.labels), strict=True
    ):
        frame.write_parquet(tmp_path / name)
    summary = {key: value for key, value in tables.summary().items() if key != "format"}
    loaded = ProductTables.load(tmp_path, summary)
    assert loaded.catalogue.equals(tables.catalogue)
    # their own products weigh their sessions
    assert loaded.clients["weight"].to_list() == [float(n) for n in clients["sessions"].to_list()]
    assert loaded.clients["label_weight"].to_list() == [2.0, 2.0, 1.0, 1.0, 2.0, 1.0]
