"""Population purchase cycles: the due-ness prior of each label."""

import numpy as np
import pytest

from training.cycles import DEFAULT_GAP, label_gaps
from training.features import ClientRecord


def test_label_gap_is_the_median_of_clients_mean_gaps_before_validation() -> None:
    # Client 1 buys label 0 on days 0, 10, 20 (mean gap 10); client 2 on days 0, 30 (gap 30); client 3 on
    # days 0 and 4 (gap 4). The last two sessions (validation, test) never count.
    records = [
        ClientRecord(1, 0, 0, [[0], [0], [0], [1], [1]], [0, 10, 20, 21, 22]),
        ClientRecord(2, 0, 0, [[0, 1], [0], [2], [1], [1]], [0, 30, 40, 60, 90]),
        ClientRecord(3, 0, 0, [[0], [0, 2], [2], [2], [2]], [0, 4, 5, 6, 7]),
    ]
    gaps = label_gaps(records, 4)
    assert gaps[0] == pytest.approx(10.0)  # median of 10, 30, 4
    assert gaps[2] == pytest.approx(1.0)  # client 3: days 4 and 5
    assert gaps[1] == gaps[3] == pytest.approx(np.median([10.0, 1.0]))  # nobody bought them twice in time


def test_label_gaps_without_dates_are_the_default() -> None:
    records = [ClientRecord(1, 0, 0, [[0], [0], [0], [0]])]
    assert label_gaps(records, 2).tolist() == [DEFAULT_GAP, DEFAULT_GAP]
