"""What clients recorded through the write API (sessions, demographics) and the rankings stored for them,
as the service reads them.

Plain values, no database: `app.store` reads and writes them, `app.recommender` scores them.
"""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

import numpy as np


class RecordedSession(NamedTuple):
    """One session recorded through POST /clients/{id}/sessions. Named tuples, not dataclasses: a ranking
    reads these by the hundred per batch, and a tuple is built several times faster."""

    session_id: str  # the caller's ID: the idempotency key, unique per client
    date: dt.date
    labels: tuple[str, ...]  # distinct CLAC3 names, in the order given (or of the products given)
    products: tuple[int, ...] | None  # the PD_C codes sent, when the session was recorded from products
    recorded_at: dt.datetime


class LiveClient(NamedTuple):
    """A client's recorded state: every write for the client bumps `revision`, so a ranking computed for
    one revision is valid exactly while the database still holds that revision."""

    client_id: int
    revision: int
    gender: str | None  # set by PUT /clients/{id}; None: not set (the training data's value holds)
    age: int | None
    sessions: tuple[RecordedSession, ...]  # oldest first: by date, then by recording order


class StoredRanking(NamedTuple):
    """A client's ranking computed off the request path (app/rankings.py), as stored: every label's score
    for one model version, reference date and client revision, the labels in their ranked order, and the
    labels of the history scored. Arrays, not Python sets and lists: a read decodes them without a loop."""

    scores: np.ndarray  # float32 [labels]: the probabilities the model gave, bit for bit
    order: np.ndarray  # label ids [labels], best first, ties to the lower id (`stable_topk`'s order)
    bought: np.ndarray  # label ids of the history it scored (what `exclude_bought` drops), ascending

    @staticmethod
    def label_dtype(n_labels: int) -> type[np.integer]:
        """How label ids are stored: 2 bytes each while the vocabulary allows, so a row fits one page."""
        return np.uint16 if n_labels <= 1 << 16 else np.int32


class ClientState(NamedTuple):
    """What a GET /recommend reads of its client before anything else, in one read."""

    revision: int  # 0 when nothing was ever recorded for the client
    ranking: StoredRanking | None  # the stored ranking if current (this version, date and revision)
