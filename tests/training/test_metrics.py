import math

import numpy as np
import pytest

from training.metrics import (
    Relevance,
    average_precision_at_k,
    catalogue_coverage,
    hit_rate_at_k,
    mean_metric,
    mean_ndcg,
    ndcg_at_k,
    ndcg_by_history_length,
    paired_difference,
    precision_at_k,
    ranking_report,
    recall_at_k,
    repeat_explore_report,
    top_k,
)

ALL = (recall_at_k, precision_at_k, hit_rate_at_k, ndcg_at_k, average_precision_at_k)


def test_metrics_perfect_ranking_score_one() -> None:
    ranked, truth = [3, 1, 2, 9, 8], {1, 2, 3}
    assert recall_at_k(ranked, truth, 3) == 1.0
    assert precision_at_k(ranked, truth, 3) == 1.0
    assert hit_rate_at_k(ranked, truth, 3) == 1.0
    assert ndcg_at_k(ranked, truth, 3) == pytest.approx(1.0)
    assert average_precision_at_k(ranked, truth, 3) == pytest.approx(1.0)


def test_metrics_no_hit_score_zero() -> None:
    for metric in ALL:
        assert metric([4, 5, 6], {1, 2}, 3) == 0.0


def test_metrics_empty_truth_score_zero() -> None:
    for metric in ALL:
        assert metric([1, 2, 3], set(), 3) == 0.0


def test_metrics_worked_example_matches_hand_computation() -> None:
    # truth {1, 2, 3}; hits at ranks 1 and 3 of the top 4.
    ranked, truth, k = [1, 7, 2, 8, 3], {1, 2, 3}, 4
    assert recall_at_k(ranked, truth, k) == pytest.approx(2 / 3)
    assert precision_at_k(ranked, truth, k) == pytest.approx(2 / 4)
    dcg = 1 / math.log2(2) + 1 / math.log2(4)
    idcg = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(ranked, truth, k) == pytest.approx(dcg / idcg)
    # precision@1 = 1, precision@3 = 2/3; divided by min(|truth|, k) = 3
    assert average_precision_at_k(ranked, truth, k) == pytest.approx((1 + 2 / 3) / 3)


def test_ndcg_truth_larger_than_k_ideal_uses_k_positions() -> None:
    assert ndcg_at_k([1, 2], {1, 2, 3, 4}, 2) == pytest.approx(1.0)
    assert average_precision_at_k([1, 2], {1, 2, 3, 4}, 2) == pytest.approx(1.0)
    assert recall_at_k([1, 2], {1, 2, 3, 4}, 2) == pytest.approx(0.5)


def test_precision_short_list_divides_by_k() -> None:
    assert precision_at_k([1], {1}, 5) == pytest.approx(0.2)


def test_mean_metric_averages_users_and_rejects_mismatch() -> None:
    assert mean_metric(hit_rate_at_k, [[1], [2]], [{1}, {3}], 1) == pytest.approx(0.5)
    assert mean_metric(hit_rate_at_k, [], [], 1) == 0.0
    with pytest.raises(ValueError):
        mean_metric(hit_rate_at_k, [[1]], [], 1)


def test_coverage_counts_distinct_items_in_top_k() -> None:
    assert catalogue_coverage([[1, 2, 9], [2, 3, 9]], 10, 2) == pytest.approx(0.3)
    assert catalogue_coverage([[1]], 0, 1) == 0.0


def test_ranking_report_has_every_metric_and_k() -> None:
    report = ranking_report([[1, 2]], [{1}], 4, ks=(1, 2))
    assert set(report) == {
        f"{m}@{k}" for m in ("recall", "ndcg", "hit_rate", "precision", "map", "coverage") for k in (1, 2)
    }
    assert report["precision@2"] == pytest.approx(0.5)
    assert report["coverage@1"] == pytest.approx(0.25)


def test_paired_difference_mean_and_standard_error_by_hand() -> None:
    # diffs 1, 0, -1, 2: mean 0.5, sample variance (0.25 + 0.25 + 2.25 + 2.25) / 3 = 5/3
    mean, se = paired_difference([1.0, 1.0, 0.0, 2.0], [0.0, 1.0, 1.0, 0.0])
    assert mean == pytest.approx(0.5)
    assert se == pytest.approx(math.sqrt(5 / 3 / 4))
    assert paired_difference([0.3], [0.1]) == pytest.approx((0.2, 0.0))
    assert paired_difference([], []) == (0.0, 0.0)
    with pytest.raises(ValueError):
        paired_difference([1.0], [])


def test_top_k_best_first_ties_by_lower_id() -> None:
    assert top_k(np.array([[0.1, 0.9, 0.9, 0.5], [1.0, 1.0, 1.0, 1.0]]), 3) == [[1, 2, 3], [0, 1, 2]]
    assert top_k(np.array([[3.0, 1.0]]), 5) == [[0, 1]]  # k beyond the row: every id


def test_mean_ndcg_equals_the_per_list_metric_to_the_last_bit() -> None:
    rng = np.random.default_rng(0)
    scores = rng.random((300, 40))
    truths = [set(rng.choice(40, size=int(rng.integers(0, 15)), replace=False).tolist()) for _ in range(300)]
    for k in (1, 5, 10, 20):
        assert mean_ndcg(scores, truths, k) == mean_metric(ndcg_at_k, top_k(scores, k), truths, k)


def test_relevance_scores_rankings_as_the_per_list_metric() -> None:
    rng = np.random.default_rng(1)
    truths = [set(rng.choice(30, size=int(rng.integers(0, 12)), replace=False).tolist()) for _ in range(200)]
    ranked = rng.integers(0, 30, size=(200, 10))  # repeats count as hits again, as in ndcg_at_k
    relevance = Relevance.of(truths, 30)
    expected = [ndcg_at_k(row, truth, 10) for row, truth in zip(ranked.tolist(), truths, strict=True)]
    assert relevance.ndcg(ranked).tolist() == expected
    assert relevance.mean_ndcg(ranked) == mean_metric(ndcg_at_k, ranked.tolist(), truths, 10)
    assert relevance.mean_ndcg(ranked[:, :4], 10) == mean_metric(
        ndcg_at_k, ranked[:, :4].tolist(), truths, 10
    )
    assert Relevance.of([], 30).mean_ndcg(np.zeros((0, 10), dtype=np.int64)) == 0.0


def test_repeat_explore_split_by_hand() -> None:
    # user 0 bought 1, 2 before; truth {1, 5}: repeat {1}, explore {5}. Top 2: [1, 3] -> rep 1/1, expl 0/1.
    # "new to you" (history removed): [5, 3] -> explore recall 1, NDCG 1.
    # user 1 bought nothing before; truth {4}: explore only. Top 2 [4, 0]; new [4, 0].
    report = repeat_explore_report([[1, 3], [4, 0]], [[5, 3], [4, 0]], [{1, 5}, {4}], [{1, 2}, set()], k=2)
    assert report["recall_rep@2"] == pytest.approx(1.0)  # user 0 only: user 1 has no repeat part
    assert report["recall_expl@2"] == pytest.approx((0.0 + 1.0) / 2)
    assert report["repeat_share@2"] == pytest.approx((1 / 2 + 0.0) / 2)
    assert report["truth_repeat_share"] == pytest.approx((1 / 2 + 0.0) / 2)
    assert report["new_ndcg@2"] == pytest.approx(1.0) and report["new_recall@2"] == pytest.approx(1.0)


def test_repeat_explore_without_any_part_is_zero() -> None:
    report = repeat_explore_report([[0]], [[1]], [set()], [{0}], k=1)
    assert report["recall_rep@1"] == 0.0 and report["new_ndcg@1"] == 0.0
    assert report["repeat_share@1"] == 1.0


def test_ndcg_by_history_length_buckets_only_users_present() -> None:
    out = ndcg_by_history_length([[0], [1], [2]], [{0}, {0}, {2}], [2, 5, 60], k=1)
    assert out == {"ndcg@1_hist_1-3": 1.0, "ndcg@1_hist_4-6": 0.0, "ndcg@1_hist_51+": 1.0}
