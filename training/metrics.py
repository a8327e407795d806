"""Ranking metrics as pure functions over one ranked id list and one truth set.

Every per-list metric has the signature `metric(ranked, truth, k) -> float`; `mean_metric` averages it over
users and `ranking_report` computes the whole table. Gains are binary (a label is in the truth set or not);
a ranked list should not repeat ids (a repeat counts as a second hit).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

Metric = Callable[[Sequence[int], Collection[int], int], float]
KS = (5, 10, 20)
HISTORY_BUCKETS = ((1, 3), (4, 6), (7, 10), (11, 20), (21, 50), (51, None))  # sessions before the target


def top_k(scores: np.ndarray, k: int) -> list[list[int]]:
    """Each row's k highest-scoring ids, best first (ties: the lower id first, so runs are reproducible)."""
    scores = np.asarray(scores)
    k = min(k, scores.shape[1])
    if k == 0:
        return [[] for _ in range(scores.shape[0])]
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.lexsort((part, -np.take_along_axis(scores, part, axis=1)), axis=1)
    return np.take_along_axis(part, order, axis=1).tolist()


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


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def mean_metric(
    metric: Metric, rankings: Sequence[Sequence[int]], truths: Sequence[Collection[int]], k: int
) -> float:
    """Mean of `metric` over users (every user counts, empty truth included as 0.0). No users: 0.0."""
    return _mean(per_user(metric, rankings, truths, k))


@dataclass(frozen=True)
class Relevance:
    """Truth sets as a boolean [U, n_items] matrix, for metrics over many rankings of the same users at once
    (a grid search scores hundreds of rankings against one validation set)."""

    relevant: np.ndarray  # bool [U, n_items]
    sizes: np.ndarray  # int64 [U]: each truth set's size

    @classmethod
    def of(cls, truths: Sequence[Collection[int]], n_items: int) -> Relevance:
        relevant = np.zeros((len(truths), n_items), dtype=bool)
        rows = [b for b, truth in enumerate(truths) for _ in truth]
        relevant[rows, [item for truth in truths for item in truth]] = True
        return cls(relevant, np.fromiter((len(t) for t in truths), dtype=np.int64, count=len(truths)))

    def ndcg(self, ranked: np.ndarray, k: int = 10) -> np.ndarray:
        """float64 [U]: `ndcg_at_k` of each row of `ranked` [U, >= 0] (ids, best first) with the same
        arithmetic (the hits' discounts added rank by rank), so each value equals the per-list metric's."""
        ranked = np.asarray(ranked, dtype=np.int64)[:, :k]
        hits = np.take_along_axis(self.relevant, ranked, axis=1)
        discounts = [1.0 / math.log2(r + 2) for r in range(k)]
        dcg = np.zeros(len(self.sizes))
        for r in range(ranked.shape[1]):
            dcg = dcg + np.where(hits[:, r], discounts[r], 0.0)
        ideal = np.asarray([sum(discounts[:n]) for n in range(k + 1)])[np.minimum(self.sizes, k)]
        return np.where(ideal > 0, dcg / np.where(ideal > 0, ideal, 1.0), 0.0)

    def mean_ndcg(self, ranked: np.ndarray, k: int = 10) -> float:
        """`mean_metric(ndcg_at_k, ranked, truths, k)`, to the last bit."""
        return _mean(self.ndcg(ranked, k).tolist())


def mean_ndcg(scores: np.ndarray, truths: Sequence[Collection[int]], k: int = 10) -> float:
    """Mean NDCG@k of score rows against the truth sets, vectorised (the validation criterion of every
    choice; equals `mean_metric(ndcg_at_k, top_k(scores, k), truths, k)`)."""
    scores = np.asarray(scores)
    if not len(truths):
        return 0.0
    ranked = np.asarray(top_k(scores, k), dtype=np.int64).reshape(len(truths), -1)
    return Relevance.of(truths, scores.shape[1]).mean_ndcg(ranked, k)


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


def repeat_explore_report(
    rankings: Sequence[Sequence[int]],
    new_rankings: Sequence[Sequence[int]],
    truths: Sequence[Collection[int]],
    bought: Sequence[Collection[int]],
    k: int = 10,
) -> dict[str, float]:
    """The repeat / explore split of Li et al. ("A Next Basket Recommendation Reality Check", TOIS 2023).

    A user's truth splits into its repeat part (labels in `bought`, the user's history) and its explore
    part (the rest). recall_rep@k / recall_expl@k: |top-k ∩ part| / |part|, averaged over the users whose
    part is non-empty (0.0 if none). repeat_share@k: the share of the top k that the user bought before;
    truth_repeat_share: the share of the truth that is repeat (users with a non-empty truth). new_ndcg@k,
    new_recall@k: the "new to you" ranking (`new_rankings`: the history's labels removed before the top k)
    against the explore part, averaged over the users that have one.
    """
    rep, expl, new_ndcg, new_recall, share, truth_share = [], [], [], [], [], []
    for ranked, new, truth, seen in zip(rankings, new_rankings, truths, bought, strict=True):
        repeat, explore = set(truth) & set(seen), set(truth) - set(seen)
        if repeat:
            rep.append(recall_at_k(ranked, repeat, k))
        if explore:
            expl.append(recall_at_k(ranked, explore, k))
            new_ndcg.append(ndcg_at_k(new, explore, k))
            new_recall.append(recall_at_k(new, explore, k))
        if truth:
            truth_share.append(len(repeat) / len(truth))
        share.append(sum(item in seen for item in ranked[:k]) / k)
    return {
        f"recall_rep@{k}": _mean(rep),
        f"recall_expl@{k}": _mean(expl),
        f"repeat_share@{k}": _mean(share),
        "truth_repeat_share": _mean(truth_share),
        f"new_ndcg@{k}": _mean(new_ndcg),
        f"new_recall@{k}": _mean(new_recall),
    }


def bucket_name(low: int, high: int | None) -> str:
    return f"{low}+" if high is None else f"{low}-{high}"


def ndcg_by_history_length(
    rankings: Sequence[Sequence[int]], truths: Sequence[Collection[int]], lengths: Sequence[int], k: int = 10
) -> dict[str, float]:
    """Mean NDCG@k per bucket of history length (sessions before the target, `HISTORY_BUCKETS`), as
    "ndcg@10_hist_4-6": value, for the buckets that hold at least one user."""
    out = {}
    for low, high in HISTORY_BUCKETS:
        users = [i for i, n in enumerate(lengths) if n >= low and (high is None or n <= high)]
        if users:
            values = [ndcg_at_k(rankings[i], truths[i], k) for i in users]
            out[f"ndcg@{k}_hist_{bucket_name(low, high)}"] = _mean(values)
    return out
