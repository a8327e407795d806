"""The interface every baseline implements, and the data it learns from.

A baseline is fitted on the `Pool` (each client's history before the validation session: what the model may
learn from), tuning its hyperparameters on the validation examples where it has any, and then scores any
`Examples`: `score(examples) -> float32 [E, N]`, higher is better, so one evaluation ranks baselines and
models alike. Every baseline is a weighted basket sum, optionally mixed with neighbours: it says which by
its `StartSpec` (`start()`), computes the sums (`features`), and scores them with `start_logits`, the
arithmetic of the model's graph, so the model started at a baseline ranks exactly as it does.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from training.features import ClientRecord, Examples, History, history_before_valid
from training.start import BaselineStart, StartFeatures, StartSpec, start_logits


@dataclass(frozen=True)
class Baskets:
    """Histories flattened to baskets: basket i belongs to owner `owner[i]` and is `age[i]` baskets before
    that owner's newest one; `labels[i]` are its label ids."""

    owner: np.ndarray  # int64 [R]
    age: np.ndarray  # int64 [R], 0 = the owner's newest basket
    labels: list[np.ndarray]  # R arrays of label ids
    n_owners: int
    n_labels: int

    @classmethod
    def of(cls, histories: Sequence[History], n_labels: int) -> Baskets:
        owner = [b for b, history in enumerate(histories) for _ in history]
        age = [len(history) - 1 - j for history in histories for j in range(len(history))]
        labels = [np.asarray(basket, dtype=np.int64) for history in histories for basket in history]
        return cls(np.asarray(owner, dtype=np.int64), np.asarray(age, dtype=np.int64), labels,
                   len(histories), n_labels)  # fmt: skip

    def weighted_sum(self, weights: np.ndarray) -> np.ndarray:
        """float64 [n_owners, n_labels]: each owner's sum of its baskets' multi-hot vectors x `weights`."""
        sizes = np.fromiter((len(x) for x in self.labels), dtype=np.int64, count=len(self.labels))
        flat = np.concatenate(self.labels) if self.labels else np.zeros(0, dtype=np.int64)
        index = np.repeat(self.owner, sizes) * self.n_labels + flat
        total = np.bincount(index, weights=np.repeat(weights, sizes), minlength=self.n_owners * self.n_labels)
        return total.reshape(self.n_owners, self.n_labels)

    def history_length(self) -> np.ndarray:
        return np.bincount(self.owner, minlength=self.n_owners)


@dataclass(frozen=True)
class Pool:
    """The clients baselines learn from, each with its history before the validation session; the
    neighbour pool of TIFU-KNN (and of the model's start) is `neighbour_rows` of them."""

    clnt_ids: list[int]
    histories: list[History]
    neighbour_rows: np.ndarray  # int64, ascending: rows of the clients that may be neighbours

    @classmethod
    def of(cls, records: Sequence[ClientRecord], *, max_neighbours: int, seed: int) -> Pool:
        """Every client; at most `max_neighbours` of them (a seeded sample) as neighbours."""
        rows = np.arange(len(records))
        if len(records) > max_neighbours:
            rng = np.random.default_rng(seed)
            rows = np.sort(rng.choice(len(records), size=max_neighbours, replace=False))
        return cls([r.clnt_id for r in records], [history_before_valid(r) for r in records], rows)

    def neighbour_histories(self) -> list[History]:
        return [self.histories[i] for i in self.neighbour_rows]

    def neighbour_row_of(self, clnt_ids: Sequence[int]) -> torch.Tensor:
        """int64 [E]: each client's row in the neighbour pool, -1 if it is not there."""
        row = {self.clnt_ids[i]: j for j, i in enumerate(self.neighbour_rows.tolist())}
        return torch.tensor([row.get(c, -1) for c in clnt_ids], dtype=torch.int64)


def session_counts(history: History, n_labels: int) -> np.ndarray:
    """float64 [N]: in how many sessions of `history` each label occurs (labels are distinct per session)."""
    counts = np.zeros(n_labels, dtype=np.float64)
    for session in history:
        np.add.at(counts, np.asarray(session, dtype=np.int64), 1.0)
    return counts


class Baseline(ABC):
    """Fit once on a `Pool` (tuning on the validation examples), then score any examples."""

    name: ClassVar[str]
    max_labels: ClassVar[int | None] = None  # above this many labels the baseline is too costly to fit

    def __init__(self, n_labels: int) -> None:
        self.n_labels = n_labels
        self.params: dict[str, float] = {}  # the hyperparameters chosen on validation
        self.popularity = np.zeros(n_labels)  # G-Pop: sessions of the pool holding each label

    def fit(self, pool: Pool, valid: Examples) -> Baseline:
        self.popularity = sum(
            (session_counts(h, self.n_labels) for h in pool.histories), start=np.zeros(self.n_labels)
        )
        self._fit(pool, valid)
        return self

    def _fit(self, pool: Pool, valid: Examples) -> None:
        """What the baseline learns beyond popularity (nothing by default)."""
        return None

    @abstractmethod
    def features(self, examples: Examples) -> StartFeatures:
        """The own (and neighbour) basket sums of each example's history, float32 [E, N] each."""

    @abstractmethod
    def start(self) -> StartSpec: ...

    def score(self, examples: Examples) -> np.ndarray:
        """float32 [E, N]: the start logits of the examples' sums (ties and the rest by G-Pop)."""
        return self.scores_of(self.features(examples), self.start())

    def scores_of(self, features: StartFeatures, spec: StartSpec) -> np.ndarray:
        return start_logits(features, spec, torch.from_numpy(self.popularity)).numpy()

    def configure_start(self, start: BaselineStart) -> None:
        """Hand the start module what it needs beyond the spec (ItemKNN: its label similarity)."""
        return None
