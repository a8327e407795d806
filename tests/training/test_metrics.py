import math

import pytest

from training.metrics import (
    average_precision_at_k,
    catalogue_coverage,
    hit_rate_at_k,
    mean_metric,
    ndcg_at_k,
    paired_difference,
    precision_at_k,
    ranking_report,
    recall_at_k,
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
