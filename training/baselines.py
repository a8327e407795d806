"""Simple recommenders the model must beat, behind one small interface.

A baseline is fitted on the clients' histories before the validation session (what the model may learn
from) and then scores any history: `score(histories) -> float [B, N]`, higher is better, so the same
evaluation code ranks baselines and the model. ItemKNN, TIFU-KNN or a recency-weighted P-Pop plug in by
subclassing `Baseline`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

History = Sequence[Sequence[int]]  # sessions oldest first, each a list of label ids


def session_counts(history: History, n_labels: int) -> np.ndarray:
    """float64 [N]: in how many sessions of `history` each label occurs (labels are distinct per session)."""
    counts = np.zeros(n_labels, dtype=np.float64)
    for session in history:
        np.add.at(counts, np.asarray(session, dtype=np.int64), 1.0)
    return counts


class Baseline(ABC):
    """fit once on training histories, then score any batch of histories."""

    name: str

    def __init__(self, n_labels: int) -> None:
        self.n_labels = n_labels

    @abstractmethod
    def fit(self, histories: Sequence[History]) -> Baseline: ...

    @abstractmethod
    def score(self, histories: Sequence[History]) -> np.ndarray: ...


class GlobalPopularity(Baseline):
    """G-Pop: every client gets the labels bought in the most sessions overall."""

    name = "G-Pop"

    def fit(self, histories: Sequence[History]) -> GlobalPopularity:
        self.popularity = sum(
            (session_counts(h, self.n_labels) for h in histories),
            start=np.zeros(self.n_labels, dtype=np.float64),
        )
        return self

    def score(self, histories: Sequence[History]) -> np.ndarray:
        return np.tile(self.popularity, (len(histories), 1))


class PersonalPopularity(Baseline):
    """P-Pop: the client's own labels by the number of sessions holding them; ties and the rest by G-Pop."""

    name = "P-Pop"

    def fit(self, histories: Sequence[History]) -> PersonalPopularity:
        gpop = GlobalPopularity(self.n_labels).fit(histories).popularity
        # Scaled into [0, 1): it orders labels with equal own counts but never outweighs one more purchase.
        self.tie_break = gpop / (gpop.max() + 1.0)
        return self

    def score(self, histories: Sequence[History]) -> np.ndarray:
        own = np.zeros((len(histories), self.n_labels), dtype=np.float64)
        for b, history in enumerate(histories):
            own[b] = session_counts(history, self.n_labels)
        return own + self.tie_break


BASELINES: tuple[type[Baseline], ...] = (GlobalPopularity, PersonalPopularity)


def fit_baselines(histories: Sequence[History], n_labels: int) -> list[Baseline]:
    """Every baseline of BASELINES, fitted on `histories`."""
    return [cls(n_labels).fit(histories) for cls in BASELINES]
