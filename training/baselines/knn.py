"""Neighbourhood baselines: ItemKNN and TIFU-KNN (Hu et al., "Modeling Personalized Item Frequency
Information for Next-basket Recommendation", SIGIR 2020).

- ItemKNN: the client's P-Pop vector times the label-label cosine of co-occurrence in the pool's baskets;
- TIFU-KNN: the client's TIFU-weighted basket sum (training/start.py, `tifu_weights`), mixed with the mean
  of its k Euclidean-nearest neighbours' sums: alpha * own + (1 - alpha) * neighbours. A client is never
  its own neighbour. Hyperparameters are chosen by NDCG@10 on the validation examples.

The vector, neighbour and scoring arithmetic is training/start.py's, the code the model's graph runs, in
float32 as there, so the model started at one of them ranks exactly as it does. TIFU-KNN's grid search (1,152
points) ranks each client's candidates only (`Candidates`), averages the neighbour vectors as one matrix
product (a sparse one when they are very sparse: product level, a few hundred non-zeros in tens of thousands
of items), and scores every point's rankings at once (`Relevance`): its choice is the one a point-by-point
search of the same rankings makes.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from training.baselines.base import Baseline, Baskets, Pool
from training.baselines.popularity import own_only, recency_ppop
from training.features import Examples
from training.metrics import Relevance
from training.start import BaselineStart, StartFeatures, StartSpec, nearest, neighbour_mean, tifu_weights
from training.topk import stable_topk

log = logging.getLogger(__name__)

TIFU_GRID: dict[str, tuple[float, ...]] = {
    "group_size": (2, 3, 7),
    "within": (0.8, 0.9, 1.0),
    "across": (0.6, 0.8, 0.9, 1.0),
    "k": (50, 100, 300, 600),
    "alpha": (0.1, 0.2, 0.3, 0.45, 0.6, 0.75, 0.9, 1.0),
}
CANDIDATES = 200  # per client, the neighbour mean's highest items a grid point's top 10 is ranked among
# Neighbour vectors with fewer non-zeros than this share are averaged as a sparse matrix, the others as a
# dense one: per multiply-add, torch's sparse product costs 50-250 times BLAS's
SPARSE_SHARE = 0.02


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
        relevance = Relevance.of(valid.targets, self.n_labels)
        exclude = pool.neighbour_row_of(valid.clnt_ids)
        best: tuple[float, dict[str, float]] = (-1.0, {})
        popular = torch.from_numpy(self.popularity).float().topk(min(10, self.n_labels)).indices
        # every grid point's bias: `_spec` leaves the tie-breaker's weight at its default
        bias = StartSpec(self.name).bias(torch.from_numpy(self.popularity))
        for decay in _grid(("group_size", "within", "across")):
            query, neighbours = self._vectors(valid.histories, decay), self._neighbours(decay)
            k_max = min(int(max(TIFU_GRID["k"])), len(neighbours) - 1)
            order = nearest(query, neighbours, (neighbours**2).sum(1), k_max, exclude)  # shared by every k
            mean = _mean_of(neighbours)
            for k in TIFU_GRID["k"]:
                features = StartFeatures(query, mean(order[:, : min(int(k), k_max)]))
                candidates = Candidates.of(features, popular, bias)
                for alpha in TIFU_GRID["alpha"]:
                    params = decay | {"k": k, "alpha": alpha}
                    ndcg = relevance.mean_ndcg(candidates.top_ranked(self._spec(params)).numpy())
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
    """`neighbour_mean` over `pool` as a function of the rows [B, k]: a [B, pool] matrix of 1/k at the rows
    times the pool, as a sparse product when few of its entries are non-zero (`SPARSE_SHARE`)."""
    if pool.count_nonzero() >= SPARSE_SHARE * pool.numel():
        return lambda rows: _selection(rows, pool) @ pool
    pool_t = pool.t().to_sparse()
    return lambda rows: torch.sparse.mm(pool_t, _selection(rows, pool).t()).t().contiguous()


def _selection(rows: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
    """[B, len(pool)]: 1 / k at each row's k pool rows, 0 elsewhere."""
    pick = torch.zeros(rows.shape[0], pool.shape[0], dtype=pool.dtype)
    return pick.scatter_(1, rows, 1.0 / max(rows.shape[1], 1))


@dataclass(frozen=True)
class Candidates:
    """The items a client's top 10 can hold at any alpha, with their start features and bias gathered once
    for every alpha of a grid point: the others have no own weight and at least CANDIDATES items with a
    higher or equal neighbour mean. Each row holds its CANDIDATES highest neighbour means, every item with
    own weight and the 10 most popular (the tie-breaker's order), ascending; an item may occur twice
    (`repeat` marks the second, ranked once)."""

    ids: torch.Tensor  # int64 [B, C]
    own: torch.Tensor  # float32 [B, C], the features at `ids`
    near: torch.Tensor
    bias: torch.Tensor  # the start's bias at `ids`
    repeat: torch.Tensor  # bool [B, C]

    @classmethod
    def of(cls, features: StartFeatures, popular: torch.Tensor, bias: torch.Tensor) -> Candidates:
        """`popular`: the 10 most popular items; `bias`: float32 [N], the spec's (`StartSpec.bias`)."""
        n = features.own.shape[1]
        own = (features.own > 0).sum(1).max().clamp(min=1)
        parts = (
            features.neighbours.topk(min(CANDIDATES, n), dim=1).indices,
            features.own.topk(int(min(int(own), n)), dim=1).indices,
            popular.unsqueeze(0).expand(features.own.shape[0], -1),
        )
        ids = torch.cat(parts, dim=1).sort(dim=1).values
        repeat = torch.zeros_like(ids, dtype=torch.bool)
        repeat[:, 1:] = ids[:, 1:] == ids[:, :-1]
        return cls(ids, features.own.gather(1, ids), features.neighbours.gather(1, ids), bias[ids], repeat)

    def top_ranked(self, spec: StartSpec) -> torch.Tensor:
        """int64 [B, 10]: each row's top 10 of `start_logits` under `spec`'s weights: the same float32
        arithmetic per item, ties to the lower id (as metrics.top_k)."""
        own_weight, near_weight = spec.weights()
        scores = (self.bias + self.own * own_weight) + self.near * near_weight  # start_logits, item by item
        return self.ids.gather(1, stable_topk(scores.masked_fill(self.repeat, float("-inf")), 10))


def _grid(names: Sequence[str]) -> list[dict[str, float]]:
    """Every combination of the named hyperparameters' candidate values, in a fixed order."""
    values = itertools.product(*(TIFU_GRID[n] for n in names))
    return [dict(zip(names, v, strict=True)) for v in values]
