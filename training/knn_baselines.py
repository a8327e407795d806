"""The strong simple next-basket baselines: recency-weighted P-Pop, ItemKNN and TIFU-KNN.

On real baskets a client's own purchase frequency is hard to beat; these methods are what Wide & Deep has to
beat to be worth deploying. All of them score every label from weighted sums of the client's past baskets:

- recency-weighted P-Pop: basket weight `decay ** a`, where a = 0 for the newest history basket;
- ItemKNN: the client's P-Pop vector times the label-label cosine of co-occurrence in baskets;
- TIFU-KNN (Hu et al., SIGIR 2020): the history is cut into groups of `group_size` baskets counted from the
  newest (the oldest group may be partial); a basket weighs `within ** q` inside its group (q = 0 newest) and
  the group's mean weighs `across ** g` (g = 0 newest group), averaged over groups. The score mixes the
  client's vector with the mean of its `k` nearest neighbours (Euclidean): alpha * own + (1 - alpha) * nn.

No statistic sees a validation or test basket: label popularity, co-occurrence and the TIFU-KNN neighbour
pool use only "context" and "train" sessions. A client's own history at a target is every kept session
before it. Hyperparameters are chosen by NDCG@10 on the validation targets only; ties in a score (and
labels a client never bought) are ordered by global popularity.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from training.dataset import ProcessedData
from training.metrics import mean_metric, ndcg_at_k

logger = logging.getLogger(__name__)

STAT_SPLITS = ("context", "train")  # the sessions statistics may use: never a validation or test basket
TIE_EPS = 1e-9  # popularity tie-breaker scale: far below any gap between two distinct history scores

DECAYS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
TIFU_GRID: dict[str, tuple[float, ...]] = {
    "group_size": (2, 3, 7),
    "within": (0.8, 0.9, 1.0),
    "across": (0.6, 0.8, 0.9, 1.0),
    "k": (50, 100, 300, 600),
    "alpha": (0.1, 0.2, 0.3, 0.45, 0.6, 0.75, 0.9, 1.0),
}


@dataclass(frozen=True)
class Baskets:
    """A set of history baskets, flattened: basket i belongs to example `owner[i]`, `age[i]` baskets before
    that example's newest history basket; `labels[i]` are its label ids."""

    owner: np.ndarray  # int64 [R]
    age: np.ndarray  # int64 [R], 0 = newest basket of the owner's history
    labels: list[np.ndarray]  # R arrays of label ids
    n_owners: int
    n_labels: int

    def weighted_sum(self, weights: np.ndarray) -> np.ndarray:
        """[n_owners, n_labels]: each owner's sum of its baskets' multi-hot vectors times `weights`."""
        sizes = np.fromiter((len(x) for x in self.labels), dtype=np.int64, count=len(self.labels))
        flat = np.concatenate(self.labels) if self.labels else np.zeros(0, dtype=np.int64)
        index = np.repeat(self.owner, sizes) * self.n_labels + flat
        total = np.bincount(index, weights=np.repeat(weights, sizes), minlength=self.n_owners * self.n_labels)
        return total.reshape(self.n_owners, self.n_labels)

    def history_length(self) -> np.ndarray:
        return np.bincount(self.owner, minlength=self.n_owners)


@dataclass(frozen=True)
class Examples:
    """The targets of one split (one per client) and the history baskets before each."""

    clients: np.ndarray  # CLNT_ID of each example, ascending
    history: Baskets
    truth: list[np.ndarray]  # the target basket's label ids


@dataclass(frozen=True)
class BaselineResult:
    """One baseline's chosen hyperparameters and its score matrices on the validation and test targets."""

    name: str
    valid_scores: np.ndarray  # [n_clients, n_labels], rows in Examples.clients order
    test_scores: np.ndarray
    params: dict[str, float] = field(default_factory=dict)


def split_examples(data: ProcessedData, split: str) -> Examples:
    """The examples whose target is the client's `split` session ("valid" or "test")."""
    targets = data.sessions.filter(pl.col("split") == split).select("CLNT_ID", "position", "labels")
    return _examples(data, targets)


def pool_examples(data: ProcessedData) -> Examples:
    """Each client's statistics-safe history (its context and train sessions), as a TIFU-KNN neighbour."""
    cut = (
        data.sessions.filter(pl.col("split").is_in(STAT_SPLITS))
        .group_by("CLNT_ID")
        .agg((pl.col("position").max() + 1).alias("position"))
        .with_columns(pl.lit([], dtype=pl.List(pl.Int32)).alias("labels"))
    )
    return _examples(data, cut)


def _examples(data: ProcessedData, targets: pl.DataFrame) -> Examples:
    targets = targets.sort("CLNT_ID").with_row_index("owner")
    rows = (
        data.sessions.join(targets.select("CLNT_ID", "owner", pl.col("position").alias("cut")), on="CLNT_ID")
        .filter(pl.col("position") < pl.col("cut"))
        .sort("owner", "position")
    )
    return Examples(
        clients=targets["CLNT_ID"].to_numpy(),
        history=Baskets(
            owner=rows["owner"].to_numpy().astype(np.int64),
            age=(rows["cut"] - 1 - rows["position"]).to_numpy().astype(np.int64),
            labels=[np.asarray(x, dtype=np.int64) for x in rows["labels"].to_list()],
            n_owners=targets.height,
            n_labels=data.vocab.n_labels,
        ),
        truth=[np.asarray(x, dtype=np.int64) for x in targets["labels"].to_list()],
    )


def label_popularity(data: ProcessedData) -> np.ndarray:
    """G-Pop: how many context and train sessions hold each label."""
    counts = np.zeros(data.vocab.n_labels)
    labels = data.sessions.filter(pl.col("split").is_in(STAT_SPLITS))["labels"].explode().drop_nulls()
    np.add.at(counts, labels.to_numpy(), 1.0)
    return counts


def with_popularity_ties(scores: np.ndarray, popularity: np.ndarray) -> np.ndarray:
    """Scores whose ties (and zeros) are broken by global popularity without reordering distinct scores."""
    return scores + TIE_EPS * popularity / max(float(popularity.max()), 1.0)


def recency_ppop(history: Baskets, decay: float) -> np.ndarray:
    """Sum of the client's baskets weighted `decay ** age`; decay 1 is plain P-Pop (session counts)."""
    return history.weighted_sum(np.power(decay, history.age.astype(float)))


def cooccurrence_cosine(baskets: Iterable[np.ndarray], n_labels: int) -> np.ndarray:
    """Label-label cosine of basket co-occurrence: C[i, j] / sqrt(C[i, i] * C[j, j]); 1 on the diagonal."""
    counts = np.zeros((n_labels, n_labels))
    for basket in baskets:
        counts[np.ix_(basket, basket)] += 1.0
    norm = np.sqrt(np.diag(counts))
    norm[norm == 0] = 1.0
    return counts / norm[:, None] / norm[None, :]


def tifu_vectors(history: Baskets, *, group_size: int, within: float, across: float) -> np.ndarray:
    """TIFU-KNN's user vectors: decayed basket means per group, decayed over groups, averaged."""
    group = history.age // group_size
    n_groups = (history.history_length() + group_size - 1) // group_size
    # The oldest group holds what is left over, so its mean divides by its own size.
    last = n_groups[history.owner] - 1
    leftover = history.history_length()[history.owner] - last * group_size
    group_len = np.where(group == last, leftover, group_size)
    weights = (
        np.power(within, (history.age % group_size).astype(float))
        * np.power(across, group.astype(float))
        / group_len
        / np.maximum(n_groups[history.owner], 1)
    )
    return history.weighted_sum(weights)


def neighbour_order(query: np.ndarray, pool: np.ndarray, self_index: np.ndarray) -> np.ndarray:
    """[B, P] pool rows sorted by Euclidean distance to each query, nearest first; a query's own client
    (`self_index[b]`, -1 if none) comes last so it is never its own neighbour."""
    dist = (query**2).sum(1)[:, None] + (pool**2).sum(1)[None, :] - 2.0 * query @ pool.T
    rows = np.flatnonzero(self_index >= 0)
    dist[rows, self_index[rows]] = np.inf
    return np.argsort(dist, axis=1, kind="stable")


def neighbour_mean(pool: np.ndarray, order: np.ndarray, k: int) -> np.ndarray:
    """[B, N]: the mean of each query's k nearest pool vectors (`order` from neighbour_order)."""
    k = min(k, pool.shape[0] - 1)
    # A dense averaging matrix turns the mean into one matmul instead of a [B, k, N] gather.
    average = np.zeros((order.shape[0], pool.shape[0]))
    np.put_along_axis(average, order[:, :k], 1.0 / k, axis=1)
    return average @ pool


def top_k(scores: np.ndarray, k: int) -> list[list[int]]:
    """Each row's k highest-scoring label ids, best first (ties by the lower id)."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.lexsort((part, -np.take_along_axis(scores, part, axis=1)), axis=1)
    return np.take_along_axis(part, order, axis=1).tolist()


def mean_ndcg(scores: np.ndarray, truth: Sequence[np.ndarray], k: int = 10) -> float:
    """Mean NDCG@k of score rows against the target baskets (the tuning criterion)."""
    return mean_metric(ndcg_at_k, top_k(scores, k), [set(t.tolist()) for t in truth], k)


def run_knn_baselines(data: ProcessedData) -> list[BaselineResult]:
    """Fit recency-weighted P-Pop, ItemKNN and TIFU-KNN, tuned on validation, scored on valid and test."""
    valid, test = split_examples(data, "valid"), split_examples(data, "test")
    if not np.array_equal(valid.clients, test.clients):
        raise ValueError("every client must have one valid and one test target")
    popularity = label_popularity(data)
    return [
        _tune_recency(valid, test, popularity),
        _item_knn(data, valid, test, popularity),
        _tune_tifu(data, valid, test, popularity),
    ]


def _tune_recency(valid: Examples, test: Examples, popularity: np.ndarray) -> BaselineResult:
    def score(ex: Examples, decay: float) -> np.ndarray:
        return with_popularity_ties(recency_ppop(ex.history, decay), popularity)

    best = max(DECAYS, key=lambda d: mean_ndcg(score(valid, d), valid.truth))
    logger.info("recency P-Pop: decay %.2f chosen on validation", best)
    return BaselineResult("P-Pop (recency)", score(valid, best), score(test, best), {"decay": best})


def _item_knn(data: ProcessedData, valid: Examples, test: Examples, popularity: np.ndarray) -> BaselineResult:
    stats = data.sessions.filter(pl.col("split").is_in(STAT_SPLITS))["labels"].to_list()
    sim = cooccurrence_cosine((np.asarray(b, dtype=np.int64) for b in stats), data.vocab.n_labels)

    def score(ex: Examples) -> np.ndarray:
        return with_popularity_ties(recency_ppop(ex.history, 1.0) @ sim, popularity)

    return BaselineResult("ItemKNN", score(valid), score(test))


def _tune_tifu(
    data: ProcessedData, valid: Examples, test: Examples, popularity: np.ndarray
) -> BaselineResult:
    pool = pool_examples(data)
    self_index = np.searchsorted(pool.clients, valid.clients)

    def vectors(ex: Examples, decay: dict[str, float]) -> np.ndarray:
        group_size = int(decay["group_size"])
        return tifu_vectors(ex.history, group_size=group_size, within=decay["within"], across=decay["across"])

    def score(query: np.ndarray, neighbours: np.ndarray, params: dict[str, float]) -> np.ndarray:
        near = neighbour_mean(neighbours, neighbour_order(query, neighbours, self_index), int(params["k"]))
        return with_popularity_ties(params["alpha"] * query + (1.0 - params["alpha"]) * near, popularity)

    best: tuple[float, dict[str, float]] = (-1.0, {})
    for decay in _grid(TIFU_GRID, ("group_size", "within", "across")):
        query, neighbours = vectors(valid, decay), vectors(pool, decay)
        order = neighbour_order(query, neighbours, self_index)  # shared by every k and alpha
        for k in TIFU_GRID["k"]:
            near = neighbour_mean(neighbours, order, int(k))
            for alpha in TIFU_GRID["alpha"]:
                ndcg = mean_ndcg(
                    with_popularity_ties(alpha * query + (1.0 - alpha) * near, popularity), valid.truth
                )
                if ndcg > best[0]:
                    best = (ndcg, decay | {"k": k, "alpha": alpha})
    ndcg, params = best
    logger.info("TIFU-KNN: %s chosen on validation (NDCG@10 %.4f)", params, ndcg)
    neighbours = vectors(pool, params)
    return BaselineResult(
        "TIFU-KNN",
        score(vectors(valid, params), neighbours, params),
        score(vectors(test, params), neighbours, params),
        params,
    )


def _grid(grid: dict[str, tuple[float, ...]], names: Sequence[str]) -> list[dict[str, float]]:
    """Every combination of the named hyperparameters' candidate values, in a fixed order."""
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*(grid[n] for n in names))]
