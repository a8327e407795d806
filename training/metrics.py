"""Ranking metrics as pure functions over one ranked id list and one truth set.

Every per-list metric has the signature `metric(ranked, truth, k) -> float`; `mean_metric` averages it over
users and `ranking_report` computes the whole table. Gains are binary (a label is in the truth set or not);
a ranked list should not repeat ids (a repeat counts as a second hit).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Sequence

Metric = Callable[[Sequence[int], Collection[int], int], float]
KS = (5, 10, 20)


def _hits(ranked: Sequence[int], truth: Collection[int], k: int) -> list[bool]:
    return [item in truth for item in ranked[:k]]


def recall_at_k(ranked: Sequence[int], truth: Collection[int], k: int) -> float:
    """|top-k ∩ truth| / |truth|. Empty truth: 0.0."""
    return sum(_hits(ranked, truth, k)) / len(truth) if truth else 0.0


def precision_at_k(ranked: Sequence[int], truth: Collection[int], k: int) -> float:
    """|top-k ∩ truth| / k (k, not the list length: a short list is not rewarded). Empty truth: 0.0."""
    return sum(_hits(ranked, truth, k)) / k if truth else 0.0


def hit_rate_at_k(ranked: Sequence[int], truth: Collection[int], k: int) -> float:
    """1.0 if any of the top k is in truth, else 0.0. Empty truth: 0.0."""
    return 1.0 if any(_hits(ranked, truth, k)) else 0.0


def ndcg_at_k(ranked: Sequence[int], truth: Collection[int], k: int) -> float:
    """DCG / IDCG with binary gains: DCG = sum over hits at rank r (1-based) of 1 / log2(r + 1);
    IDCG = sum_{r=1}^{min(|truth|, k)} 1 / log2(r + 1). Empty truth: 0.0."""
    if not truth:
        return 0.0
    dcg = sum(1.0 / math.log2(r + 2) for r, hit in enumerate(_hits(ranked, truth, k)) if hit)
    idcg = sum(1.0 / math.log2(r + 2) for r in range(min(len(truth), k)))
    return dcg / idcg


def average_precision_at_k(ranked: Sequence[int], truth: Collection[int], k: int) -> float:
    """sum over hits at rank r <= k of precision@r, divided by min(|truth|, k) (so a perfect top k scores
    1.0 even when the truth is larger than k). Empty truth: 0.0. Its mean over users is MAP@k."""
    if not truth:
        return 0.0
    total, found = 0.0, 0
    for r, hit in enumerate(_hits(ranked, truth, k), start=1):
        if hit:
            found += 1
            total += found / r
    return total / min(len(truth), k)


METRICS: dict[str, Metric] = {
    "recall": recall_at_k,
    "ndcg": ndcg_at_k,
    "hit_rate": hit_rate_at_k,
    "precision": precision_at_k,
    "map": average_precision_at_k,
}


def per_user(
    metric: Metric, rankings: Sequence[Sequence[int]], truths: Sequence[Collection[int]], k: int
) -> list[float]:
    """`metric` of every user, in order."""
    if len(rankings) != len(truths):
        raise ValueError(f"{len(rankings)} rankings for {len(truths)} truth sets")
    return [metric(r, t, k) for r, t in zip(rankings, truths, strict=True)]


def mean_metric(
    metric: Metric, rankings: Sequence[Sequence[int]], truths: Sequence[Collection[int]], k: int
) -> float:
    """Mean of `metric` over users (every user counts, empty truth included as 0.0). No users: 0.0."""
    values = per_user(metric, rankings, truths, k)
    return sum(values) / len(values) if values else 0.0


def paired_difference(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """(mean of a_i - b_i, its standard error sd / sqrt(n), the sample sd with n - 1 in its denominator)
    for per-user values of two methods on the same users. No users: (0.0, 0.0); one user: error 0.0."""
    if len(a) != len(b):
        raise ValueError(f"{len(a)} values against {len(b)}")
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    n = len(diffs)
    mean = sum(diffs) / n if n else 0.0
    if n < 2:
        return mean, 0.0
    variance = sum((d - mean) ** 2 for d in diffs) / (n - 1)
    return mean, math.sqrt(variance / n)


def catalogue_coverage(rankings: Iterable[Sequence[int]], n_items: int, k: int) -> float:
    """|union over users of their top k| / n_items: the share of the catalogue ever recommended.
    n_items 0: 0.0."""
    seen = {item for ranked in rankings for item in ranked[:k]}
    return len(seen) / n_items if n_items else 0.0


def ranking_report(
    rankings: Sequence[Sequence[int]], truths: Sequence[Collection[int]], n_items: int, ks: Sequence[int] = KS
) -> dict[str, float]:
    """{"ndcg@10": ..., "coverage@10": ...} for every metric in METRICS and every k in `ks`."""
    report = {f"{name}@{k}": mean_metric(fn, rankings, truths, k) for name, fn in METRICS.items() for k in ks}
    report.update({f"coverage@{k}": catalogue_coverage(rankings, n_items, k) for k in ks})
    return report
