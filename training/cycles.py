"""Each label's population purchase cycle: the prior of the model's due-ness feature (training/model.py)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from training.features import ClientRecord, history_before_valid

DEFAULT_GAP = 30.0  # days, for data without dates or a label nobody bought twice


def label_gaps(records: Sequence[ClientRecord], n_labels: int) -> np.ndarray:
    """float32 [N]: per label, the median over clients who bought it at least twice (in their sessions
    before validation) of their mean days between purchases; labels without such clients get the median
    over all labels' gaps, and data without dates `DEFAULT_GAP`."""
    gaps: list[list[float]] = [[] for _ in range(n_labels)]
    for record in records:
        sessions = history_before_valid(record)
        days = record.session_days[: len(sessions)]
        seen: dict[int, list[int]] = {}
        for labels, day in zip(sessions, days, strict=True):
            if day is None:
                continue
            for label in labels:
                seen.setdefault(label, []).append(day)
        for label, when in seen.items():
            if len(when) > 1:
                gaps[label].append((max(when) - min(when)) / (len(when) - 1))
    medians = np.array([np.median(g) if g else np.nan for g in gaps], dtype=np.float32)
    known = medians[~np.isnan(medians)]
    fallback = float(np.median(known)) if known.size else DEFAULT_GAP
    return np.where(np.isnan(medians), fallback, medians).astype(np.float32)
