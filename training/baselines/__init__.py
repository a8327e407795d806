"""The baselines the model must beat, behind one interface (`Baseline`), fitted and evaluated alike."""

from __future__ import annotations

from training.baselines.base import Baseline, Baskets, Pool, session_counts
from training.baselines.knn import ItemKNN, TifuKNN
from training.baselines.popularity import GlobalPopularity, PersonalPopularity, RecencyPopularity
from training.features import Examples

BASELINES: tuple[type[Baseline], ...] = (
    GlobalPopularity,
    PersonalPopularity,
    RecencyPopularity,
    ItemKNN,
    TifuKNN,
)

__all__ = [
    "BASELINES",
    "Baseline",
    "Baskets",
    "GlobalPopularity",
    "ItemKNN",
    "PersonalPopularity",
    "Pool",
    "RecencyPopularity",
    "TifuKNN",
    "fit_baselines",
    "session_counts",
]


def fit_baselines(pool: Pool, valid: Examples, n_labels: int) -> list[Baseline]:
    """Every baseline of BASELINES, fitted on `pool` and tuned on `valid`."""
    return [cls(n_labels).fit(pool, valid) for cls in BASELINES]
