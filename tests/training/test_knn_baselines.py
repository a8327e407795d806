"""Recency-weighted P-Pop, ItemKNN and TIFU-KNN on hand-computed cases."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from training import knn_baselines as kb
from training.dataset import CLIENTS_SCHEMA, SESSIONS_SCHEMA, ProcessedData, Vocabulary


def _data(histories: dict[int, list[list[int]]], n_labels: int = 4) -> ProcessedData:
    """A processed data set whose clients bought the given baskets (oldest first, the last one is test)."""
    rows = []
    for client, baskets in histories.items():
        n = len(baskets)
        for pos, labels in enumerate(baskets):
            split = (
                "test" if pos == n - 1 else "valid" if pos == n - 2 else "context" if pos == 0 else "train"
            )
            rows.append((client, 100 * client + pos, pos + 1, None, pos, sorted(labels), split))
    sessions = pl.DataFrame(rows, schema=SESSIONS_SCHEMA, orient="row")
    clients = pl.DataFrame(
        {"CLNT_ID": list(histories), "gender": [0] * len(histories), "age": [2] * len(histories)},
        schema=CLIENTS_SCHEMA,
    )
    vocab = Vocabulary(labels=[f"l{i}" for i in range(n_labels)], label_clac1=[0] * n_labels, clac1=["c"])
    return ProcessedData(vocab, clients, sessions, [], {})


def _baskets(history: list[list[int]], n_labels: int) -> kb.Baskets:
    """One owner's history, oldest first."""
    return kb.Baskets(
        owner=np.zeros(len(history), dtype=np.int64),
        age=np.arange(len(history))[::-1].copy(),
        labels=[np.asarray(b, dtype=np.int64) for b in history],
        n_owners=1,
        n_labels=n_labels,
    )


def test_recency_ppop_decay_half_weights_newest_basket_one() -> None:
    scores = kb.recency_ppop(_baskets([[0, 1], [1]], 3), 0.5)

    assert scores.tolist() == [[0.5, 1.5, 0.0]]


def test_recency_ppop_decay_one_counts_sessions() -> None:
    scores = kb.recency_ppop(_baskets([[0, 1], [1], [1, 2]], 3), 1.0)

    assert scores.tolist() == [[1.0, 3.0, 1.0]]


def test_tifu_vectors_five_baskets_groups_of_two_hand_computed() -> None:
    # Basket k buys label k. Groups from the newest: {4, 3}, {2, 1}, {0} (partial, its mean divides by 1).
    history = _baskets([[0], [1], [2], [3], [4]], 5)

    vec = kb.tifu_vectors(history, group_size=2, within=0.5, across=0.5)

    expected = np.array([0.25 / 1, 0.5 * 0.5 / 2, 0.5 / 2, 0.5 / 2, 1.0 / 2]) / 3
    assert vec[0] == pytest.approx(expected)


def test_cooccurrence_cosine_counts_shared_baskets() -> None:
    sim = kb.cooccurrence_cosine([np.array([0, 1]), np.array([0, 1]), np.array([0])], 3)

    assert sim[0, 1] == pytest.approx(2 / np.sqrt(3 * 2))
    assert sim[0, 0] == pytest.approx(1.0)
    assert sim[2].tolist() == [0.0, 0.0, 0.0]


def test_neighbour_mean_never_picks_the_query_itself() -> None:
    pool = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1]])
    order = kb.neighbour_order(pool[:1], pool, np.array([0]))

    near = kb.neighbour_mean(pool, order, 1)

    assert order[0].tolist() == [2, 1, 0]
    assert 0.5 * pool[0] + 0.5 * near[0] == pytest.approx([0.95, 0.05])


def test_with_popularity_ties_orders_ties_only() -> None:
    scores = np.array([[1.0, 1.0, 2.0, 0.0]])

    ranked = kb.top_k(kb.with_popularity_ties(scores, np.array([1.0, 5.0, 0.0, 9.0])), 4)

    assert ranked == [[2, 1, 0, 3]]


def test_statistics_never_see_valid_or_test_baskets() -> None:
    # Label 3 is bought only in client 1's valid and test baskets.
    data = _data({1: [[0], [0, 1], [3], [3]], 2: [[1], [1, 2], [2], [0]]})

    popularity = kb.label_popularity(data)
    pool = kb.pool_examples(data)
    test = kb.split_examples(data, "test")

    assert popularity.tolist() == [2.0, 3.0, 1.0, 0.0]
    assert kb.recency_ppop(pool.history, 1.0)[:, 3].tolist() == [0.0, 0.0]
    assert kb.recency_ppop(test.history, 1.0).tolist() == [[2.0, 1.0, 0.0, 1.0], [0.0, 2.0, 2.0, 0.0]]
    assert [t.tolist() for t in test.truth] == [[3], [0]]


def test_run_knn_baselines_recency_tuned_on_valid_prefers_newest() -> None:
    # Each client switches to label 2 in its second-newest history basket and keeps it: the newest baskets
    # predict the target, the old majority (label 0) does not; decay < 1 wins on validation.
    history = [[0, 1], [0, 1], [0, 1], [2, 3], [2, 3], [2, 3]]
    data = _data({c: [*history, [2, 3]] for c in range(1, 6)})

    results = {r.name: r for r in kb.run_knn_baselines(data)}

    recency = results["P-Pop (recency)"]
    assert recency.params["decay"] < 1.0
    assert kb.top_k(recency.test_scores, 2) == [[2, 3]] * 5
    assert results["TIFU-KNN"].test_scores.shape == (5, 4)
    assert set(results["TIFU-KNN"].params) == set(kb.TIFU_GRID)
    assert results["ItemKNN"].valid_scores.shape == (5, 4)
