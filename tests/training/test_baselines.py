"""Every baseline behind one interface, on hand-computed cases."""

import numpy as np
import pytest
import torch

from training.baselines import (
    BASELINES,
    Baskets,
    Ease,
    GlobalPopularity,
    ItemKNN,
    PersonalPopularity,
    Pool,
    RecencyPopularity,
    TifuKNN,
    fit_baselines,
    session_counts,
)
from training.baselines.ease import LAMBDAS, ease_matrix
from training.baselines.knn import (
    TIFU_GRID,
    Candidates,
    _mean_of,
    cooccurrence_cosine,
    tifu_vectors,
)
from training.baselines.popularity import recency_ppop
from training.features import ClientRecord, Examples, split_examples
from training.metrics import top_k
from training.start import StartFeatures, StartSpec, nearest, neighbour_mean, start_logits

HISTORIES = [[[0, 1], [1, 2]], [[1], [3]], [[1, 3]]]  # label 1 in 4 sessions, 3 in 2, 0 and 2 in 1


def examples(histories: list[list[list[int]]], targets: list[list[int]] | None = None) -> Examples:
    n = len(histories)
    return Examples(
        list(range(n)), histories, [0] * n, [0] * n, targets or [[0]] * n, [[] for _ in histories], [None] * n
    )


def pool(histories: list[list[list[int]]], *, max_neighbours: int = 100) -> Pool:
    """A pool whose clients 0.. hold `histories` before their validation sessions."""
    records = [ClientRecord(c, 0, 0, [*h, [0], [0]]) for c, h in enumerate(histories)]
    return Pool.of(records, max_neighbours=max_neighbours, seed=0)


def one_owner(history: list[list[int]], n_labels: int) -> Baskets:
    return Baskets.of([history], n_labels)


def test_session_counts_counts_sessions_per_label() -> None:
    assert session_counts([[0, 1], [1]], 3).tolist() == [1.0, 2.0, 0.0]


def test_gpop_ranks_by_sessions_overall_same_for_everyone() -> None:
    gpop = GlobalPopularity(5).fit(pool(HISTORIES), examples([[]]))
    assert top_k(gpop.score(examples([[[4]], []])), 3) == [[1, 3, 0], [1, 3, 0]]  # ties: lower id


def test_ppop_own_counts_first_then_gpop_order() -> None:
    ppop = PersonalPopularity(5).fit(pool(HISTORIES), examples([[]]))
    # own: label 2 twice, label 0 once; then G-Pop order for the rest (1, 3, then 4 unseen)
    assert top_k(ppop.score(examples([[[2], [2, 0]]])), 5) == [[2, 0, 1, 3, 4]]


def test_ppop_empty_history_equals_gpop() -> None:
    fitted = fit_baselines(pool(HISTORIES), examples([[]]), 5)
    ppop, gpop = fitted[1], fitted[0]
    assert top_k(ppop.score(examples([[]])), 5) == top_k(gpop.score(examples([[]])), 5)
    assert ppop.score(examples([])).shape == (0, 5)


def test_fit_baselines_returns_every_baseline_named_and_scoring() -> None:
    fitted = fit_baselines(pool(HISTORIES), examples(HISTORIES, [[1], [3], [1]]), 5)
    assert [b.name for b in fitted] == ["G-Pop", "P-Pop", "P-Pop (recency)", "ItemKNN", "TIFU-KNN", "EASE"]
    assert [type(b) for b in fitted] == list(BASELINES)
    assert all(b.score(examples([[[0]]])).shape == (1, 5) for b in fitted)
    assert set(fitted[4].params) == set(TIFU_GRID) and set(fitted[5].params) == {"lambda"}


def test_recency_ppop_decay_half_weights_newest_basket_one() -> None:
    assert recency_ppop(one_owner([[0, 1], [1]], 3), 0.5).tolist() == [[0.25, 0.75, 0.0]]  # / 2 baskets


def test_recency_ppop_decay_one_counts_sessions() -> None:
    counts = recency_ppop(one_owner([[0, 1], [1], [1, 2]], 3), 1.0) * 3  # / 3 baskets
    assert counts[0].tolist() == pytest.approx([1.0, 3.0, 1.0])


def test_recency_baseline_tuned_on_valid_prefers_newest() -> None:
    # Every client switches to labels 2, 3 in its newest three baskets: decay < 1 wins on validation.
    history = [[0, 1], [0, 1], [0, 1], [0, 1], [2, 3], [2, 3], [2, 3]]
    valid = examples([history] * 5, [[2, 3]] * 5)
    recency = RecencyPopularity(4).fit(pool([history] * 5), valid)
    assert recency.params["decay"] < 1.0
    assert top_k(recency.score(valid), 2) == [[2, 3]] * 5


def test_tifu_vectors_five_baskets_groups_of_two_hand_computed() -> None:
    # Basket k buys label k. Groups from the newest: {4, 3}, {2, 1}, {0} (partial, its mean divides by 1).
    vec = tifu_vectors(one_owner([[0], [1], [2], [3], [4]], 5), group_size=2, within=0.5, across=0.5)
    expected = np.array([0.25 / 1, 0.5 * 0.5 / 2, 0.5 / 2, 0.5 / 2, 1.0 / 2]) / 3
    assert vec[0] == pytest.approx(expected)


def test_cooccurrence_cosine_counts_shared_baskets() -> None:
    sim = cooccurrence_cosine([[0, 1], [0, 1], [0]], 3)
    assert sim[0, 1] == pytest.approx(2 / np.sqrt(3 * 2))
    assert sim[0, 0] == pytest.approx(1.0)
    assert sim[2].tolist() == [0.0, 0.0, 0.0]


def test_item_knn_scores_own_counts_through_the_cosine() -> None:
    knn = ItemKNN(3).fit(pool([[[0, 1]], [[0, 1]], [[0]]]), examples([[]]))
    own = knn.features(examples([[[0]]])).own
    assert own[0, :2].tolist() == pytest.approx([1.0, 2 / np.sqrt(6)], abs=1e-6)


def test_ease_matrix_is_the_closed_form_with_a_zero_diagonal() -> None:
    held = np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1], [1, 0, 0]], dtype=np.float64)
    weights = ease_matrix(held, 2.0)
    inverse = np.linalg.inv(held.T @ held + 2.0 * np.eye(3))
    expected = np.eye(3) - inverse / np.diag(inverse)[None, :]  # Steck (2019), eq. 8
    np.fill_diagonal(expected, 0.0)
    assert weights.dtype == np.float32 and weights == pytest.approx(expected.astype(np.float32), abs=1e-6)
    # B minimises ||X - XB||^2 + lambda ||B||^2 with diag(B) = 0: its stationarity condition off the diagonal
    gradient = -held.T @ (held - held @ expected) + 2.0 * expected
    assert np.abs(gradient - np.diag(np.diag(gradient))).max() < 1e-9


def test_ease_scores_a_label_from_the_other_labels_held_and_tunes_lambda_on_valid() -> None:
    # Labels 0 and 1 always go together; 2 goes with 3. A client holding 0 should get 1 first, not 0 itself.
    histories = [[[0, 1]], [[0, 1], [2, 3]], [[2, 3]], [[0, 1]], [[2, 3], [4]]]
    ease = Ease(5).fit(pool(histories), examples(histories, [[1], [0], [3], [1], [2]]))
    assert ease.params["lambda"] in LAMBDAS
    own = ease.features(examples([[[0], [0]]])).own[0]
    assert own[0] == 0.0 and own[1] > max(own[2], own[3], own[4])
    assert ease.start().binary and ease.start().item_similarity  # held or not: sessions do not count


def test_fit_baselines_leaves_out_a_baseline_above_its_label_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Ease, "max_labels", 4)
    fitted = fit_baselines(pool(HISTORIES), examples(HISTORIES, [[1], [3], [1]]), 5)
    assert "EASE" not in [b.name for b in fitted] and len(fitted) == len(BASELINES) - 1


def test_tifu_knn_never_picks_the_client_itself_as_neighbour() -> None:
    # Client 0's history is unique; with k = 1 its neighbour must be client 1 or 2, never itself.
    histories = [[[0], [0]], [[1], [1]], [[2], [2]]]
    tifu = TifuKNN(3).fit(pool(histories), examples(histories, [[0], [1], [2]]))
    tifu.params.update({"group_size": 2, "within": 1.0, "across": 1.0, "k": 1, "alpha": 0.5})
    features = tifu.features(examples(histories[:1]))
    assert features.own[0, 0].item() == pytest.approx(1.0)
    assert features.neighbours[0, 0].item() == 0.0  # the neighbour (never itself) never bought 0


def test_pool_caps_the_neighbours_with_a_seeded_sample() -> None:
    records = [ClientRecord(c, 0, 0, [[c % 5], [1], [0]]) for c in range(50)]
    capped = Pool.of(records, max_neighbours=10, seed=3)
    assert len(capped.neighbour_rows) == 10 and len(capped.histories) == 50
    assert (
        capped.neighbour_rows.tolist() == Pool.of(records, max_neighbours=10, seed=3).neighbour_rows.tolist()
    )
    rows = capped.neighbour_row_of([int(capped.neighbour_rows[4]), -7])
    assert rows.tolist() == [4, -1]


def test_scores_order_ties_by_popularity_only() -> None:
    # Own counts 1, 1, 2, 0; G-Pop prefers label 1 to label 0 and label 3 to everything.
    ppop = PersonalPopularity(4).fit(pool([[[3]], [[3]], [[3], [1]]]), examples([[]]))
    assert top_k(ppop.score(examples([[[0, 1, 2], [2]]])), 4) == [[2, 1, 0, 3]]


def test_statistics_never_see_valid_or_test_baskets() -> None:
    # Label 3 is bought only in client 1's valid and test baskets.
    records = [ClientRecord(1, 0, 0, [[0], [0, 1], [3], [3]]), ClientRecord(2, 0, 0, [[1], [1, 2], [2], [0]])]
    fitted = fit_baselines(Pool.of(records, max_neighbours=10, seed=0), split_examples(records, "valid"), 4)
    assert fitted[0].popularity.tolist() == [2.0, 3.0, 1.0, 0.0]


@pytest.mark.parametrize("density", [0.02, 0.5])  # product level (sparse mean) and label level (dense)
def test_tifu_grid_ranks_candidates_as_the_full_scores_rank(density: float) -> None:
    rng = np.random.default_rng(0)
    n_clients, n_items = 60, 900

    def vectors(rows: int) -> torch.Tensor:
        values = rng.integers(1, 4, size=(rows, n_items)) * (rng.random((rows, n_items)) < density)
        return torch.from_numpy((values / 3).astype(np.float32))

    query, pool = vectors(n_clients), vectors(80)
    popularity = rng.integers(0, 5, size=n_items).astype(np.float64)  # many ties: the tie-breaker counts
    rows = nearest(query, pool, (pool**2).sum(1), 7, None)
    near = _mean_of(pool)(rows)
    assert torch.allclose(near, neighbour_mean(pool, rows), atol=1e-6)
    features = StartFeatures(query, near)
    popular = torch.from_numpy(popularity).float().topk(10).indices
    bias = StartSpec("TIFU-KNN").bias(torch.from_numpy(popularity))
    candidates = Candidates.of(features, popular, bias)
    for alpha in (0.0, 0.3, 1.0):
        spec = StartSpec("TIFU-KNN", neighbours=7, alpha=alpha)
        scores = start_logits(features, spec, torch.from_numpy(popularity)).numpy()
        ranked = candidates.top_ranked(spec).numpy()
        assert all(len(set(row)) == 10 for row in ranked.tolist())
        # the same scores at every rank as metrics.top_k's (which of several tied items differs)
        full = np.asarray(top_k(scores, 10))
        assert np.array_equal(np.take_along_axis(scores, ranked, 1), np.take_along_axis(scores, full, 1))
