"""Popularity baselines: G-Pop, P-Pop and recency-weighted P-Pop."""

from __future__ import annotations

import numpy as np
import torch

from training.baselines.base import Baseline, Baskets, Pool
from training.features import Examples
from training.metrics import mean_ndcg
from training.start import TIE_CONTINUOUS, TIE_COUNTS, StartFeatures, StartSpec, tifu_weights

RECENCY_DECAYS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)  # recency P-Pop's validation grid


def recency_ppop(history: Baskets, decay: float) -> np.ndarray:
    """float32: the client's baskets weighted decay^(baskets ago) / n (`tifu_weights` with groups of one);
    decay 1 is P-Pop's session counts / n."""
    n = torch.from_numpy(history.history_length()[history.owner])
    weights = tifu_weights(torch.from_numpy(history.age), n, 1, 1.0, decay)
    return history.weighted_sum(weights.double().numpy()).astype(np.float32)


def own_only(own: np.ndarray) -> StartFeatures:
    vectors = torch.from_numpy(own)
    return StartFeatures(vectors, torch.zeros_like(vectors))


class GlobalPopularity(Baseline):
    """G-Pop: every client gets the labels bought in the most sessions overall."""

    name = "G-Pop"

    def features(self, examples: Examples) -> StartFeatures:
        return own_only(np.zeros((len(examples), self.n_labels), dtype=np.float32))

    def start(self) -> StartSpec:
        return StartSpec(self.name, alpha=0.0, popularity=1.0)


class RecencyPopularity(Baseline):
    """Recency-weighted P-Pop: the client's baskets weighted decay^(baskets ago), decay chosen on
    validation; ties and the rest by G-Pop."""

    name = "P-Pop (recency)"

    def _fit(self, pool: Pool, valid: Examples) -> None:
        baskets = Baskets.of(valid.histories, self.n_labels)
        truths = [set(t) for t in valid.targets]

        def ndcg(decay: float) -> float:
            features = own_only(recency_ppop(baskets, decay))
            return mean_ndcg(self.scores_of(features, self._spec(decay)), truths)

        self.params["decay"] = max(RECENCY_DECAYS, key=ndcg)

    def features(self, examples: Examples) -> StartFeatures:
        return own_only(recency_ppop(Baskets.of(examples.histories, self.n_labels), self.params["decay"]))

    def _spec(self, decay: float) -> StartSpec:
        return StartSpec(self.name, across=decay, popularity=TIE_COUNTS if decay == 1.0 else TIE_CONTINUOUS)

    def start(self) -> StartSpec:
        return self._spec(self.params["decay"])


class PersonalPopularity(RecencyPopularity):
    """P-Pop: the client's own labels by the number of sessions holding them; ties and the rest by G-Pop
    (recency-weighted P-Pop with decay 1)."""

    name = "P-Pop"

    def _fit(self, pool: Pool, valid: Examples) -> None:
        self.params["decay"] = 1.0
