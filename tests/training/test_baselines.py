import numpy as np

from training.baselines import GlobalPopularity, PersonalPopularity, fit_baselines, session_counts
from training.evaluate import top_k

HISTORIES = [[[0, 1], [1, 2]], [[1], [3]], [[1, 3]]]  # label 1 in 4 sessions, 3 in 2, 0 and 2 in 1


def test_session_counts_counts_sessions_per_label() -> None:
    assert session_counts([[0, 1], [1]], 3).tolist() == [1.0, 2.0, 0.0]


def test_gpop_ranks_by_sessions_overall_same_for_everyone() -> None:
    gpop = GlobalPopularity(5).fit(HISTORIES)
    ranked = top_k(gpop.score([[[4]], []]), 3)
    assert ranked == [[1, 3, 0], [1, 3, 0]]  # ties (0 and 2) broken by the lower id


def test_ppop_own_counts_first_then_gpop_order() -> None:
    ppop = PersonalPopularity(5).fit(HISTORIES)
    # own: label 2 twice, label 0 once; then G-Pop order for the rest (1, 3, then 4 unseen)
    assert top_k(ppop.score([[[2], [2, 0]]]), 5) == [[2, 0, 1, 3, 4]]


def test_ppop_empty_history_equals_gpop() -> None:
    ppop = PersonalPopularity(5).fit(HISTORIES)
    gpop = GlobalPopularity(5).fit(HISTORIES)
    assert top_k(ppop.score([[]]), 5) == top_k(gpop.score([[]]), 5)
    assert ppop.score([]).shape == (0, 5)


def test_fit_baselines_returns_named_fitted_baselines() -> None:
    baselines = fit_baselines(HISTORIES, 5)
    assert [b.name for b in baselines] == ["G-Pop", "P-Pop"]
    assert all(np.isfinite(b.score([[[0]]])).all() for b in baselines)
