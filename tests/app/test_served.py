"""The served version: its response cache answers only for the client revision it was computed at."""

from __future__ import annotations

import pytest

from app.filters import NO_FILTERS, Filters
from app.recommender import Recommender
from app.served import ServedVersion
from training.artifacts import ArtifactSet

pytestmark = pytest.mark.slow  # needs the session's trained artifacts


def test_cached_body_is_served_only_for_its_revision(artifacts: ArtifactSet) -> None:
    served = ServedVersion.of(Recommender(artifacts), cache_size=10)
    key = (1, 10, NO_FILTERS, 0, False)
    assert served.cached_body(key, 0) is None
    served.keep_body(key, 0, b"r0")
    assert served.cached_body(key, 0) == b"r0"
    assert served.cached_body((1, 5, NO_FILTERS, 0, False), 0) is None  # each query is its own body
    assert served.cached_body((1, 10, Filters(exclude_bought=True), 0, False), 0) is None
    assert served.cached_body(key, 1) is None  # a write since: recompute
    served.keep_body(key, 1, b"r1")
    assert (served.cached_body(key, 1), served.cached_body(key, 0)) == (b"r1", None)


def test_two_loads_of_one_version_share_no_cache(artifacts: ArtifactSet) -> None:
    first, second = (ServedVersion.of(Recommender(artifacts), cache_size=10) for _ in range(2))
    first.keep_body((1, 10, NO_FILTERS, 0, False), 0, b"body")
    assert second.cached_body((1, 10, NO_FILTERS, 0, False), 0) is None
    assert first.info == second.info and first.info.version == artifacts.metadata["version"]
