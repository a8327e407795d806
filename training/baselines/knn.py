"""Neighbourhood baselines: ItemKNN and TIFU-KNN (Hu et al., "Modeling Personalized Item Frequency
Information for Next-basket Recommendation", SIGIR 2020).

- ItemKNN: the client's P-Pop vector times the label-label cosine of co-occurrence in the pool's baskets;
- TIFU-KNN: the client's TIFU-weighted basket sum (training/start.py, `tifu_weights`), mixed with the mean
  of its k Euclidean-nearest neighbours' sums: alpha * own + (1 - alpha) * neighbours. A client is never
  its own neighbour. Hyperparameters are chosen by NDCG@10 on the validation examples.

The vector, neighbour and scoring arithmetic is training/start.py's, the code the model's graph runs, in
float32 as there, so the model started at one of them ranks exactly as it does. TIFU-KNN's grid search ranks
each client's candidates only (`_top_ranked`), and averages sparse neighbour vectors (product level: a few
hundred non-zeros in tens of thousands of items) as a sparse matrix, so its cost follows the non-zeros.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch

from training.baselines.base import Baseline, Baskets, Pool
from training.baselines.popularity import own_only, recency_ppop
from training.features import Examples
from training.metrics import mean_metric, ndcg_at_k
from training.start import BaselineStart, StartFeatures, StartSpec, nearest, neighbour_mean, tifu_weights

log = logging.getLogger(__name__)

TIFU_GRID: dict[str, tuple[float, ...]] = {
    "group_size": (2, 3, 7),
    "within": (0.8, 0.9, 1.0),
    "across": (0.6, 0.8, 0.9, 1.0),
    "k": (50, 100, 300, 600),
    "alpha": (0.1, 0.2, 0.3, 0.45, 0.6, 0.75, 0.9, 1.0),
}
CANDIDATES = 200  # per client, the neighbour mean's highest items a grid point's top 10 is ranked among
SPARSE_SHARE = 0.05  # neighbour vectors with fewer non-zeros than this share are averaged as a sparse matrix


def cooccurrence_cosine(baskets: Iterable[Sequence[int]], n_labels: int) -> np.ndarray:
    """Label-label cosine of basket co-occurrence: C[i, j] / sqrt(C[i, i] * C[j, j]); 1 on the diagonal."""
    counts = np.zeros((n_labels, n_labels))
    for basket in baskets:
        index = np.asarray(basket, dtype=np.int64)
        counts[np.ix_(index, index)] += 1.0
    norm = np.sqrt(np.diag(counts))
    norm[norm == 0] = 1.0
    return counts / norm[:, None] / norm[None, :]


class ItemKNN(Baseline):
    """The client's session counts through the label-label co-occurrence cosine; ties by G-Pop."""

    name = "ItemKNN"

    def _fit(self, pool: Pool, valid: Examples) -> None:
        self.similarity = cooccurrence_cosine((b for h in pool.histories for b in h), self.n_labels)

    def features(self, examples: Examples) -> StartFeatures:
        counts = recency_ppop(Baskets.of(examples.histories, self.n_labels), 1.0)
        return own_only(counts @ self.similarity.astype(np.float32))

    def start(self) -> StartSpec:
        return StartSpec(self.name, item_similarity=True)

    def configure_start(self, start: BaselineStart) -> None:
        start.set_similarity(torch.from_numpy(self.similarity))


def tifu_vectors(history: Baskets, *, group_size: int, within: float, across: float) -> np.ndarray:
    """[owners, N] TIFU-KNN's user vectors (float32, as in the graph): `tifu_weights` per basket, summed."""
    n = torch.from_numpy(history.history_length()[history.owner])
    weights = tifu_weights(torch.from_numpy(history.age), n, group_size, within, across)
    return history.weighted_sum(weights.double().numpy()).astype(np.float32)


class TifuKNN(Baseline):
    """TIFU-KNN over the pool's neighbour rows, hyperparameters from `TIFU_GRID` chosen on validation."""

    name = "TIFU-KNN"

    def _fit(self, pool: Pool, valid: Examples) -> None:
        self.pool = pool
        truths = [set(t) for t in valid.targets]
        exclude = pool.neighbour_row_of(valid.clnt_ids)
        best: tuple[float, dict[str, float]] = (-1.0, {})
        popular = torch.from_numpy(self.popularity).float().topk(min(10, self.n_labels)).indices
        for decay in _grid(("group_size", "within", "across")):
            query, neighbours = self._vectors(valid.histories, decay), self._neighbours(decay)
            k_max = min(int(max(TIFU_GRID["k"])), len(neighbours) - 1)
            order = nearest(query, neighbours, (neighbours**2).sum(1), k_max, exclude)  # shared by every k
            mean = _mean_of(neighbours)
            for k in TIFU_GRID["k"]:
                features = StartFeatures(query, mean(order[:, : min(int(k), k_max)]))
                candidates = _candidates(features, popular)
                for alpha in TIFU_GRID["alpha"]:
                    params = decay | {"k": k, "alpha": alpha}
                    ranked = _top_ranked(features, candidates, self._spec(params), self.popularity)
                    ndcg = mean_metric(ndcg_at_k, ranked, truths, 10)
                    if ndcg > best[0]:
                        best = (ndcg, params)
        self.params = best[1]
        log.info("TIFU-KNN: %s chosen on validation (NDCG@10 %.4f)", self.params, best[0])

    def _vectors(self, histories: Sequence[Sequence[Sequence[int]]], p: dict[str, float]) -> torch.Tensor:
        baskets = Baskets.of(histories, self.n_labels)
        vectors = tifu_vectors(
            baskets, group_size=int(p["group_size"]), within=p["within"], across=p["across"]
        )
        return torch.from_numpy(vectors)

    def _neighbours(self, p: dict[str, float]) -> torch.Tensor:
        return self._vectors(self.pool.neighbour_histories(), p)

    def features(self, examples: Examples) -> StartFeatures:
        p = self.params
        query, neighbours = self._vectors(examples.histories, p), self._neighbours(p)
        k = min(int(p["k"]), len(neighbours) - 1)
        exclude = self.pool.neighbour_row_of(examples.clnt_ids)
        near = neighbour_mean(neighbours, nearest(query, neighbours, (neighbours**2).sum(1), k, exclude))
        return StartFeatures(query, near)

    def _spec(self, p: dict[str, float]) -> StartSpec:
        return StartSpec(
            self.name,
            group_size=int(p["group_size"]),
            within=p["within"],
            across=p["across"],
            neighbours=int(p["k"]),
            alpha=p["alpha"],
        )

    def start(self) -> StartSpec:
        return self._spec(self.params)


def _mean_of(pool: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """`neighbour_mean` over `pool` as a function of the rows; through the transposed pool as a sparse matrix
    when few of its entries are non-zero (the dense mean would add up mostly zeros)."""
    if pool.count_nonzero() >= SPARSE_SHARE * pool.numel():
        return lambda rows: neighbour_mean(pool, rows)
    pool_t = pool.t().to_sparse()

    def mean(rows: torch.Tensor) -> torch.Tensor:
        pick = torch.zeros(rows.shape[0], pool.shape[0], dtype=pool.dtype)
        pick.scatter_(1, rows, 1.0 / max(rows.shape[1], 1))
        return torch.sparse.mm(pool_t, pick.t()).t().contiguous()

    return mean


def _candidates(features: StartFeatures, popular: torch.Tensor) -> torch.Tensor:
    """int64 [B, C], ascending per row: the items a client's top 10 can hold at any alpha, the others having
    no own weight and at least CANDIDATES items with a higher or equal neighbour mean: the CANDIDATES
    highest neighbour means, every item with own weight, the 10 most popular (the tie-breaker's order).
    An item may occur twice in a row (`_top_ranked` ranks it once)."""
    n = features.own.shape[1]
    own = (features.own > 0).sum(1).max().clamp(min=1)
    parts = (
        features.neighbours.topk(min(CANDIDATES, n), dim=1).indices,
        features.own.topk(int(min(int(own), n)), dim=1).indices,
        popular.unsqueeze(0).expand(features.own.shape[0], -1),
    )
    return torch.cat(parts, dim=1).sort(dim=1).values


def _top_ranked(
    features: StartFeatures, candidates: torch.Tensor, spec: StartSpec, popularity: np.ndarray
) -> list[list[int]]:
    """Each row's top 10 of `start_logits`, ranked among its candidates: the same float32 arithmetic per
    item, ties to the lower id (as metrics.top_k)."""
    own_weight, near_weight = spec.weights()
    bias = spec.bias(torch.from_numpy(popularity))[candidates]
    own, near = features.own.gather(1, candidates), features.neighbours.gather(1, candidates)
    scores = (bias + own * own_weight) + near * near_weight  # start_logits, item by item
    repeat = torch.zeros_like(candidates, dtype=torch.bool)
    repeat[:, 1:] = candidates[:, 1:] == candidates[:, :-1]
    scores = scores.masked_fill(repeat, float("-inf"))
    order = scores.sort(dim=1, descending=True, stable=True).indices[:, :10]
    return candidates.gather(1, order).tolist()


def _grid(names: Sequence[str]) -> list[dict[str, float]]:
    """Every combination of the named hyperparameters' candidate values, in a fixed order."""
    values = itertools.product(*(TIFU_GRID[n] for n in names))
    return [dict(zip(names, v, strict=True)) for v in values]
