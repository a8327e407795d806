"""What clients recorded through the write API: sessions and demographics, as the service reads them.

Plain values, no database: `app.store` reads and writes them, `app.recommender` scores them.
"""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple


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
