"""Neighbourhood baselines: ItemKNN and TIFU-KNN (Hu et al., "Modeling Personalized Item Frequency
Information for Next-basket Recommendation", SIGIR 2020).

- ItemKNN: the client's P-Pop vector times the label-label cosine of co-occurrence in the pool's baskets;
- TIFU-KNN: the client's TIFU-weighted basket sum (training/start.py, `tifu_weights`), mixed with the mean
  of its k Euclidean-nearest neighbours' sums: alpha * own + (1 - alpha) * neighbours. A client is never
  its own neighbour. Hyperparameters are chosen by NDCG@10 on the validation examples.

The vector, neighbour and scoring arithmetic is training/start.py's, the code the model's graph runs, in
float32 as there, so the model started at one of them ranks exactly as it does.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Sequence

import numpy as np
import torch

from training.baselines.base import Baseline, Baskets, Pool
from training.baselines.popularity import own_only, recency_ppop
from training.features import Examples
from training.metrics import mean_ndcg
from training.start import BaselineStart, StartFeatures, StartSpec, nearest, neighbour_mean, tifu_weights

log = logging.getLogger(__name__)

TIFU_GRID: dict[str, tuple[float, ...]] = {
    "group_size": (2, 3, 7),
    "within": (0.8, 0.9, 1.0),
    "across": (0.6, 0.8, 0.9, 1.0),
    "k": (50, 100, 300, 600),
    "alpha": (0.1, 0.2, 0.3, 0.45, 0.6, 0.75, 0.9, 1.0),
}


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
        for decay in _grid(("group_size", "within", "across")):
            query, neighbours = self._vectors(valid.histories, decay), self._neighbours(decay)
            k_max = min(int(max(TIFU_GRID["k"])), len(neighbours) - 1)
            order = nearest(query, neighbours, (neighbours**2).sum(1), k_max, exclude)  # shared by every k
            for k in TIFU_GRID["k"]:
                near = neighbour_mean(neighbours, order[:, : min(int(k), k_max)])
                for alpha in TIFU_GRID["alpha"]:
                    params = decay | {"k": k, "alpha": alpha}
                    scores = self.scores_of(StartFeatures(query, near), self._spec(params))
                    ndcg = mean_ndcg(scores, truths)
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


def _grid(names: Sequence[str]) -> list[dict[str, float]]:
    """Every combination of the named hyperparameters' candidate values, in a fixed order."""
    values = itertools.product(*(TIFU_GRID[n] for n in names))
    return [dict(zip(names, v, strict=True)) for v in values]
