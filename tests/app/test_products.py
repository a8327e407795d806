"""ProductRanker over the hand-made tables of tests/training/test_products.py; every answer worked by hand.

Catalogue rows: 0 = PD_C 1 and 1 = PD_C 2 (label 0, 4 sessions each), 2 = PD_C 3 (label 1), 3 = PD_C 4
(label 2, 2 sessions); PD_C 5 and 6 have no label. Client table rows: 0 = client 1 (F 30), 1 = client 4
(M 40), 2 = client 5 (F 20).
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.products import LABEL_SHARPNESS, ProductRanker, RankedProduct, flatten
from app.recommender import ProductLabels
from tests.training.test_products import VOCAB, write_folder
from training.load import load_tables
from training.products import HALF_LIFE_DAYS, ProductTables, build_product_tables

F, M = 1, 2  # gender codes
AGE = {20: 2, 30: 3, 40: 4}  # age codes


def decayed(*days_before_newest: int) -> float:
    return sum(0.5 ** (d / HALF_LIFE_DAYS) for d in days_before_newest)


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> ProductTables:
    folder = write_folder(tmp_path_factory.mktemp("products") / "lpoint")
    return build_product_tables(
        load_tables(folder, need_hits=False), VOCAB, client_ids=[1, 4, 5], drop_first_hit=False
    )


@pytest.fixture(scope="module")
def ranker(tables: ProductTables) -> ProductRanker:
    return ProductRanker(tables, n_clients=3, n_labels=VOCAB.n_labels, n_ages=len(VOCAB.ages))


def summary(products: list[RankedProduct]) -> list[tuple[object, ...]]:
    return [(p.pd_c, p.source, p.sessions, p.days_ago, pytest.approx(p.score)) for p in products]


def test_known_client_gets_own_products_first_then_best_sellers(ranker: ProductRanker) -> None:
    # client 5 (newest session 04-03), label 0: own PD_C 1 bought 04-02 and 04-03, weight w of w + 1 prior;
    # segment F 20 holds only PD_C 1; the label's best sellers add PD_C 2 at 1 / (w + 1) x 4/8
    w = decayed(1, 0)
    lists = ranker.rank([(0, 0.9), (2, 0.5)], n=3, row=2, gender=F, age=AGE[20])
    assert summary(lists[0]) == [
        (1, "bought", 2, 7, 0.9 * w / (w + 1)),
        (2, "label", 0, None, 0.9 / (w + 1) / 2),
    ]
    assert lists[0][0].name == "상품 1" and lists[0][0].brand == "서울우유"
    # label 2: own PD_C 4 (1 session, 04-02: 8 days before 2018-04-10), nothing else sold in it
    assert summary(lists[1]) == [(4, "bought", 1, 8, 0.5 * decayed(1) / (decayed(1) + 1))]


def test_own_products_by_recency_weight_and_n_cuts(ranker: ProductRanker) -> None:
    # client 1 (newest 04-10) bought PD_C 2 on 04-05 and 04-10, PD_C 1 on 04-01 and 04-05: same sessions,
    # PD_C 2 more recently; the label's weight: its three sessions
    recent, older = decayed(5, 0), decayed(9, 5)
    total = decayed(9, 5, 0) + 1
    both = ranker.rank([(0, 1.0)], n=3, row=0, gender=F, age=AGE[30])[0]
    assert summary(both) == [(2, "bought", 2, 0, recent / total), (1, "bought", 2, 5, older / total)]
    assert summary(ranker.rank([(0, 1.0)], n=1, row=0, gender=F, age=AGE[30])[0]) == [
        (2, "bought", 2, 0, recent / total)
    ]


def test_exclude_bought_leaves_own_products_out(ranker: ProductRanker) -> None:
    lists = ranker.rank([(0, 0.9)], n=3, row=2, gender=F, age=AGE[20], exclude_bought=True)
    assert summary(lists[0]) == [(2, "label", 0, None, 0.9 / (decayed(1, 0) + 1) / 2)]


def test_segment_best_sellers_come_before_the_labels(ranker: ProductRanker) -> None:
    # M 40 bought PD_C 2 once; the segment's list is PD_C 2 (seen); the label's adds PD_C 1: 1/2 x 4/8
    assert summary(ranker.rank([(0, 1.0)], n=5, row=1, gender=M, age=AGE[40])[0]) == [
        (2, "bought", 1, 9, 0.5),
        (1, "label", 0, None, 0.25),
    ]
    # no client: segment F 30's best sellers, tied at 2 of 4 sessions, in catalogue order
    assert summary(ranker.rank([(0, 1.0)], n=5, row=None, gender=F, age=AGE[30])[0]) == [
        (1, "segment", 0, None, 0.5),
        (2, "segment", 0, None, 0.5),
    ]
    # unknown demographics: that segment's PD_C 2 (its only sale), then the label's PD_C 1, capped by it
    assert summary(ranker.rank([(0, 1.0)], n=5, row=None, gender=0, age=0)[0]) == [
        (2, "segment", 0, None, 1.0),
        (1, "label", 0, None, 0.5),
    ]


def test_product_labels_map_pd_c_to_vocabulary_labels(tables: ProductTables) -> None:
    lookup = ProductLabels.of(tables).lookup([4, 1, 5, 7, 99])
    no, missing = ProductLabels.NO_LABEL, ProductLabels.MISSING
    assert lookup == [2, 0, no, missing, missing]  # 5: 바지 not a label; 7, 99: not sold in the window


def test_flatten_ranks_every_labels_products_by_sharpened_label_score_times_share(
    ranker: ProductRanker,
) -> None:
    # client 5: label 0's PD_C 1 (q = w / (w + 1), w = decayed(1, 0)) and PD_C 2 (1 / (w + 1) x 4/8) at
    # P = 0.9 against label 2's PD_C 4 (q = decayed(1) / (decayed(1) + 1)) at P = 0.6
    labels = [(0, 0.9), (2, 0.6)]
    w, v = decayed(1, 0), decayed(1)
    key = {
        1: 0.9**LABEL_SHARPNESS * w / (w + 1),
        2: 0.9**LABEL_SHARPNESS / (w + 1) / 2,
        4: 0.6**LABEL_SHARPNESS * v / (v + 1),
    }
    lists = ranker.rank(labels, n=2, row=2, gender=F, age=AGE[20])
    top = flatten(labels, lists, n=2)
    assert [p.pd_c for p in top] == sorted(key, key=lambda pd_c: -key[pd_c])[:2]
    assert [p.pd_c for p in top] == [1, 2]  # sharpened: label 0's second product before label 2's first
    assert top == lists[0]  # the same products, sources and scores as the label's own list


def test_loaded_tables_stay_memory_mapped_and_pull_in_no_pandas(
    tables: ProductTables, tmp_path: Path
) -> None:
    """A ranker over saved tables reads the mapped files in place (read-only views, no copy), and loading
    them imports no pandas (pyarrow's to_numpy would: 36 MB in every worker). In a fresh interpreter, so
    that nothing another test imported counts."""
    (tmp_path / "version").mkdir()
    tables.save(tmp_path / "version")
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from app.products import ProductRanker\n"
        "from training.products import ProductTables\n"
        "tables = ProductTables.load(Path(sys.argv[1]), json.loads(sys.argv[2]))\n"
        "ranker = ProductRanker(tables, n_clients=3, n_labels=int(sys.argv[3]), n_ages=int(sys.argv[4]))\n"
        "ranker.rank([(0, 0.5)], n=2, row=0, gender=1, age=3)\n"
        "views = [ranker._own_product, ranker._own_weight, ranker._label_product, ranker._segment_product]\n"
        "print(json.dumps({'pandas': 'pandas' in sys.modules,\n"
        "                  'copies': [v.flags.owndata or v.flags.writeable for v in views]}))\n"
    )
    summary = json.dumps(tables.summary())
    args = [str(tmp_path / "version"), summary, str(VOCAB.n_labels), str(len(VOCAB.ages))]
    out = subprocess.run([sys.executable, "-c", script, *args], check=True, capture_output=True, text=True)
    assert json.loads(out.stdout) == {"pandas": False, "copies": [False] * 4}
