"""The served version: one loaded artifact set with the state that belongs to it, swapped as one object.

Its response cache holds the JSON body of recent GET /recommend answers, each stamped with the client's
revision in the database (`app.live.LiveClient.revision`) at the time it was computed. A body is served
again only while the database still holds that revision, so a write on any worker or replica makes the
next read recompute: the database, not this process, says what is current. The cache is dropped with
the version, so a reload never serves another version's ranking.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from app.core.config import Settings
from app.filters import Filters
from app.lru import LruCache
from app.metrics import CACHE_HIT, CACHE_MISS
from app.recommender import Recommender
from app.schemas import ModelInfo, model_info

logger = logging.getLogger(__name__)

# client ID, k, filters, products, exclude_bought_products, explain, the reference date
CacheKey = tuple[int, int, Filters, int, bool, bool, dt.date]


@dataclass(eq=False)  # hashed by identity: BatchScorer groups queries by version
class ServedVersion:
    """A Recommender, the model description its answers carry, and its response cache."""

    recommender: Recommender
    info: ModelInfo
    responses: LruCache[CacheKey, tuple[int, bytes]]  # query -> (client revision, body)

    @classmethod
    def of(cls, recommender: Recommender, *, cache_size: int) -> ServedVersion:
        return cls(recommender, model_info(recommender.metadata), LruCache(cache_size))

    @classmethod
    def load(cls, settings: Settings) -> ServedVersion:
        """Load and verify `settings.artifacts_dir` (ArtifactError naming the file if bad)."""
        recommender = Recommender.load(settings.artifacts_dir, max_k=settings.max_k)
        logger.info("loaded model %s from %s", recommender.version, settings.artifacts_dir)
        return cls.of(recommender, cache_size=settings.recommend_cache_size)

    @property
    def version(self) -> str:
        return self.recommender.version

    @property
    def caching(self) -> bool:
        """Whether GET /recommend bodies are kept (WDREC_RECOMMEND_CACHE_SIZE > 0)."""
        return self.responses.size > 0

    def cached_body(self, key: CacheKey, revision: int) -> bytes | None:
        """The cached body of a query if it was computed at the client's `revision`, else None."""
        entry = self.responses.get(key)
        if entry is not None and entry[0] == revision:
            CACHE_HIT.inc()
            return entry[1]
        CACHE_MISS.inc()
        return None

    def keep_body(self, key: CacheKey, revision: int, body: bytes) -> None:
        self.responses.put(key, (revision, body))
