"""The baselines the model must beat, behind one interface (`Baseline`), fitted and evaluated alike."""

from __future__ import annotations

import logging

from training.baselines.base import Baseline, Baskets, Pool, session_counts
from training.baselines.ease import Ease
from training.baselines.knn import ItemKNN, TifuKNN
from training.baselines.popularity import GlobalPopularity, PersonalPopularity, RecencyPopularity
from training.features import Examples

log = logging.getLogger(__name__)

BASELINES: tuple[type[Baseline], ...] = (
    GlobalPopularity,
    PersonalPopularity,
    RecencyPopularity,
    ItemKNN,
    TifuKNN,
    Ease,
)

__all__ = [
    "BASELINES",
    "Baseline",
    "Baskets",
    "Ease",
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
    """Every baseline of BASELINES that fits `n_labels` labels, fitted on `pool` and tuned on `valid`."""
    fitting = [cls for cls in BASELINES if cls.max_labels is None or n_labels <= cls.max_labels]
    for cls in (cls for cls in BASELINES if cls not in fitting):
        log.warning("%s left out: %d labels, more than its %d", cls.name, n_labels, cls.max_labels)
    return [cls(n_labels).fit(pool, valid) for cls in fitting]
