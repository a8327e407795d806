"""EASE (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019): the strongest label-label
baseline for labels a client has never bought.

From the pool's client x label matrix X (1 where a client's pre-validation history holds the label), the
closed form B = I - P / diag(P) with P = (X'X + lambda I)^-1, and diag(B) = 0: a label is scored from the
client's other labels only, so EASE ranks what goes with a basket, not what the client already buys.
lambda is chosen on validation by NDCG@10, like every baseline's hyperparameters. The model reuses B for its
"new to you" term (training/explore.py). Above `max_labels` labels the N x N inverse is left out (it costs
N^3 and 8 N^2 bytes): no EASE baseline, no explore term.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from training.baselines.base import Baseline, Baskets, Pool
from training.baselines.popularity import own_only
from training.features import Examples
from training.metrics import mean_ndcg
from training.start import BaselineStart, StartFeatures, StartSpec

log = logging.getLogger(__name__)

LAMBDAS = (30.0, 100.0, 300.0, 1000.0, 3000.0)  # the validation grid of the L2 penalty


def ease_matrix(held: np.ndarray, lam: float) -> np.ndarray:
    """float32 [N, N] EASE's B for the binary client x label matrix `held` [M, N] and penalty `lam`."""
    gram = held.T @ held + lam * np.eye(held.shape[1])
    inverse = np.linalg.inv(gram)
    weights = -inverse / np.diag(inverse)[None, :]
    np.fill_diagonal(weights, 0.0)
    return weights.astype(np.float32)


def held_labels(histories: Baskets) -> np.ndarray:
    """float64 [owners, N]: 1 where the owner's baskets hold the label."""
    return (histories.weighted_sum(np.ones(len(histories.owner))) > 0).astype(np.float64)


class Ease(Baseline):
    """EASE over the pool's histories; ties and labels with no signal by G-Pop."""

    name = "EASE"
    max_labels = 5000

    def _fit(self, pool: Pool, valid: Examples) -> None:
        held = held_labels(Baskets.of(pool.histories, self.n_labels))
        query, truths = self._held(valid), [set(t) for t in valid.targets]  # read once for every lambda
        best: tuple[float, float, np.ndarray] = (-1.0, 0.0, np.zeros((0, 0), dtype=np.float32))
        for lam in LAMBDAS:
            weights = ease_matrix(held, lam)
            ndcg = mean_ndcg(self.scores_of(own_only(query @ weights), self.start()), truths)
            if ndcg > best[0]:
                best = (ndcg, lam, weights)
        self.params["lambda"], self.similarity = best[1], best[2]
        log.info("EASE: lambda %g chosen on validation (NDCG@10 %.4f)", best[1], best[0])

    def features(self, examples: Examples) -> StartFeatures:
        return own_only(self._held(examples) @ self.similarity)

    def _held(self, examples: Examples) -> np.ndarray:
        """float32 [E, N]: 1 where the example's history holds the label."""
        return held_labels(Baskets.of(examples.histories, self.n_labels)).astype(np.float32)

    def start(self) -> StartSpec:
        return StartSpec(self.name, item_similarity=True, binary=True)

    def configure_start(self, start: BaselineStart) -> None:
        start.set_similarity(torch.from_numpy(self.similarity))
