"""An artifact set in memory -> scores for every CLAC3 label -> top-k.

No web framework here: a script or a batch job can use a `Recommender` as it is. Features come only from
the artifact set's `FeatureBuilder` (the code training used), so served scores equal training-side scores.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch

from app.errors import (
    InvalidQueryError,
    ProductsUnavailableError,
    UnknownClientError,
    UnknownLabelsError,
    closest,
)
from app.filters import NO_FILTERS, Filters, LabelFilter, compile_filters
from app.lru import LruCache
from app.products import MAX_PRODUCTS, ProductRanker, RankedProduct
from training.artifacts import ArtifactSet, load_artifacts
from training.dataset import UNKNOWN

MAX_SUGGESTED = 10  # unknown labels that get suggestions; the rest are listed without
FILTER_CACHE_SIZE = 256  # distinct filters kept checked per loaded version


class TopK(NamedTuple):
    """A ranking: the best labels' scores and ids (best first), the labels of the scored history, and how
    many labels the filters left (fewer than k come back when fewer remain)."""

    scores: torch.Tensor
    label_ids: torch.Tensor
    bought: frozenset[int]
    candidates: int


@dataclass(frozen=True)
class Query:
    """One ranking to compute: sessions (label ids, oldest first), demographic codes, how many labels, the
    client's table row when the ranking belongs to a known client (then it is cached), and the filters."""

    sessions: list[list[int]]
    gender: int
    age: int
    k: int
    row: int | None = None
    filter: LabelFilter | None = None


@dataclass(frozen=True)
class ScoredLabel:
    """One ranked label."""

    rank: int
    label_id: int
    label: str
    clac1: str
    score: float
    bought_before: bool


@dataclass(frozen=True)
class ClientProfile:
    """A known client: demographics as vocabulary codes ("?" / 0 when unknown) and sessions oldest first."""

    client_id: int
    gender: str
    age: int
    sessions: list[list[int]]


class Recommender:
    """Scores label sets for histories with the artifact set's model; thread-safe for concurrent requests."""

    def __init__(self, artifacts: ArtifactSet, *, max_k: int = 100, cache_size: int = 10_000) -> None:
        self.artifacts = artifacts
        self.vocab = artifacts.vocab
        self.metadata: dict[str, Any] = artifacts.metadata
        self.max_k = min(max_k, self.vocab.n_labels)
        self.cache_size = cache_size
        self._label_ids = {name: i for i, name in enumerate(self.vocab.labels)}
        clients = artifacts.clients
        self._client_ids: list[int] = clients["CLNT_ID"].to_list()
        self._row_of = {cid: row for row, cid in enumerate(self._client_ids)}
        self._genders: list[int] = clients["gender"].to_list()
        self._ages: list[int] = clients["age"].to_list()
        self._sessions: list[list[list[int]]] = clients["sessions"].to_list()
        tables = artifacts.products
        self.products = (
            None
            if tables is None
            else ProductRanker(
                tables, n_clients=clients.height, n_labels=self.vocab.n_labels, n_ages=len(self.vocab.ages)
            )
        )
        # Doc2Vec inference reseeds the model's RNG before each call (determinism): one caller at a time.
        self._features_lock = threading.Lock()
        # A known client's ranking is a pure function of the loaded version (its sessions are part of the
        # artifacts), so each client's top max_k is computed once per filter; ~1.6 kB per entry.
        self._top: LruCache[tuple[int, Filters], TopK] = LruCache(cache_size)
        self._filters: LruCache[Filters, LabelFilter] = LruCache(FILTER_CACHE_SIZE)

    @classmethod
    def load(cls, path: Path, *, max_k: int = 100, cache_size: int = 10_000) -> Recommender:
        """Load and verify an artifact set (raises training.errors.ArtifactError naming the file)."""
        return cls(load_artifacts(path), max_k=max_k, cache_size=cache_size)

    @property
    def version(self) -> str:
        return str(self.metadata["version"])

    @property
    def n_clients(self) -> int:
        return len(self._client_ids)

    def clients(self, *, limit: int, offset: int) -> list[tuple[int, int]]:
        """(client ID, number of kept sessions) for one page of the client table, in table order."""
        rows = range(offset, min(offset + limit, self.n_clients))
        return [(self._client_ids[row], len(self._sessions[row])) for row in rows]

    def client(self, client_id: int) -> ClientProfile:
        """The client's demographics and sessions; UnknownClientError if not in the table."""
        row = self._row(client_id)
        return ClientProfile(
            client_id=client_id,
            gender=self.vocab.genders[self._genders[row]],
            age=self.vocab.ages[self._ages[row]],
            sessions=self._sessions[row],
        )

    def label_ids(self, names: Sequence[str]) -> list[int]:
        """Vocabulary ids of label names; UnknownLabelsError listing every unknown one with suggestions."""
        unknown = [name for name in dict.fromkeys(names) if name not in self._label_ids]
        if unknown:
            # difflib compares with every label: bounded, so a basket of typos cannot tie up a worker.
            raise UnknownLabelsError(
                {
                    name: closest(name, self.vocab.labels) if i < MAX_SUGGESTED else []
                    for i, name in enumerate(unknown)
                }
            )
        return [self._label_ids[name] for name in names]

    def score_histories(
        self, histories: Sequence[Sequence[Sequence[int]]], genders: Sequence[int], ages: Sequence[int]
    ) -> torch.Tensor:
        """Probabilities [B, N] for B histories (label ids, oldest session first) and vocabulary codes."""
        with torch.inference_mode():
            with self._features_lock:
                inputs = self.artifacts.builder.build_batch(histories, genders, ages)
            return torch.sigmoid(self.artifacts.model(*inputs))

    def label_filter(self, filters: Filters) -> LabelFilter | None:
        """`filters` checked against the vocabulary (None when they filter nothing); UnknownLabelsError,
        UnknownCategoriesError or FilterConflictError when they cannot be applied."""
        if not filters.active:
            return None
        checked = self._filters.get(filters)
        if checked is None:
            checked = compile_filters(filters, self.vocab, self.label_ids)
            self._filters.put(filters, checked)
        return checked

    def top(self, queries: Sequence[Query]) -> list[TopK]:
        """The top-k of each query from one batched forward pass, filtered labels left out before the top
        k; known clients' rankings are cached per filter."""
        scores = self.score_histories(
            [q.sessions for q in queries], [q.gender for q in queries], [q.age for q in queries]
        )
        with torch.inference_mode():  # scores is an inference tensor: updated in place only in this mode
            _apply_filters(scores, queries)
        candidates = torch.isfinite(scores).sum(dim=1).tolist()
        values, indices = torch.topk(scores, max(q.k for q in queries))
        tops: list[TopK] = []
        for query, row_values, row_indices, left in zip(queries, values, indices, candidates, strict=True):
            n = min(query.k, left)
            # Copies: a cached entry must not keep the whole batch's tensor alive.
            entry = TopK(row_values[:n].clone(), row_indices[:n].clone(), labels_in(query.sessions), left)
            if query.row is not None:
                self._top.put((query.row, _filters_of(query)), entry)
            tops.append(entry)
        return tops

    def ranked(self, entry: TopK, k: int) -> list[ScoredLabel]:
        """The first k labels of a ranking, best first, marking labels the history holds."""
        values, indices, bought = entry.scores[:k].tolist(), entry.label_ids[:k].tolist(), entry.bought
        return [
            ScoredLabel(
                rank=rank,
                label_id=label_id,
                label=self.vocab.labels[label_id],
                clac1=self.vocab.clac1[self.vocab.label_clac1[label_id]],
                score=score,
                bought_before=label_id in bought,
            )
            for rank, (label_id, score) in enumerate(zip(indices, values, strict=True), 1)
        ]

    def client_query(self, client_id: int, filters: Filters = NO_FILTERS) -> Query:
        """The query of a known client: all of its kept sessions (the builder keeps the most recent)."""
        return self.row_query(self._row(client_id), filters)

    def row_query(self, row: int, filters: Filters = NO_FILTERS) -> Query:
        """The query of the client in row `row` of the client table (see `n_clients`)."""
        return Query(
            self._sessions[row],
            self._genders[row],
            self._ages[row],
            k=self.max_k,
            row=row,
            filter=self.label_filter(filters),
        )

    def recommend(self, client_id: int, k: int, filters: Filters = NO_FILTERS) -> list[ScoredLabel]:
        """Top-k for a known client (computed once per loaded version and filter, then cached)."""
        self.check_k(k)
        entry = self.cached(client_id, filters) or self.top([self.client_query(client_id, filters)])[0]
        return self.ranked(entry, k)

    def cached(self, client_id: int, filters: Filters = NO_FILTERS) -> TopK | None:
        """The client's cached ranking, or None: never runs the model (event-loop safe)."""
        return self._top.get((self._row(client_id), filters))

    def label_products(
        self,
        items: Sequence[ScoredLabel],
        *,
        n: int,
        client_id: int | None = None,
        gender: str | None = None,
        age: int | None = None,
        exclude_bought: bool = False,
    ) -> list[list[RankedProduct]]:
        """Up to n products in each ranked label: a known client's own first, then best sellers of their
        gender x age segment (or of `gender` / `age` for a custom query), then the label's best sellers;
        `exclude_bought` leaves out the client's own products."""
        if not 0 <= n <= MAX_PRODUCTS:
            raise InvalidQueryError(f"products must be between 0 and {MAX_PRODUCTS}", details={"products": n})
        if n == 0:
            return [[] for _ in items]
        if self.products is None:
            raise ProductsUnavailableError(self.version)
        if client_id is not None:
            row = self._row(client_id)
            codes = self._genders[row], self._ages[row]
        else:
            row = None
            codes = self._code(gender, self.vocab.genders, "gender"), self._code(age, self.vocab.ages, "age")
        labels = [(item.label_id, item.score) for item in items]
        return self.products.rank(
            labels, n=n, row=row, gender=codes[0], age=codes[1], exclude_bought=exclude_bought
        )

    def row_of(self, client_id: int) -> int:
        """The client's row in the client table; UnknownClientError if not in it."""
        return self._row(client_id)

    def client_id_at(self, row: int) -> int:
        """The client ID in row `row` of the client table."""
        return self._client_ids[row]

    def _row(self, client_id: int) -> int:
        row = self._row_of.get(client_id)
        if row is None:
            raise UnknownClientError(client_id)
        return row

    def custom_query(
        self,
        *,
        basket: Sequence[str] = (),
        history: Sequence[Sequence[str]] = (),
        gender: str | None = None,
        age: int | None = None,
        k: int = 10,
        filters: Filters = NO_FILTERS,
    ) -> Query:
        """The query of a custom history whose newest session is `basket`; demographics alone: cold start."""
        named = [session for session in (*history, basket) if session]
        self.label_ids([name for session in named for name in session])  # every unknown label, one error
        # A session is its distinct labels in ascending id order, as in the processed data set.
        sessions = [sorted({self._label_ids[name] for name in session}) for session in named]
        if not sessions and gender is None and age is None:
            raise InvalidQueryError("Nothing to score: give a basket, a history, a gender or an age")
        return Query(
            sessions,
            self._code(gender, self.vocab.genders, "gender"),
            self._code(age, self.vocab.ages, "age"),
            k=self.check_k(k),
            filter=self.label_filter(filters),
        )

    def rank(self, query: Query) -> list[ScoredLabel]:
        """The query's top-k labels, best first (one forward pass)."""
        return self.ranked(self.top([query])[0], query.k)

    def check_k(self, k: int) -> int:
        """`k` if 1 <= k <= max_k, else InvalidQueryError."""
        if not 1 <= k <= self.max_k:
            raise InvalidQueryError(f"k must be between 1 and {self.max_k}", details={"k": k})
        return k

    @staticmethod
    def _code(value: str | int | None, codes: Sequence[str | int], field: str) -> int:
        """The vocabulary index of a demographic value; None is UNKNOWN (index 0, never a real code)."""
        if value is None:
            return UNKNOWN
        if value not in codes[1:]:
            raise InvalidQueryError(f"Unknown {field} {value!r}", details={"known": list(codes[1:])})
        return list(codes).index(value)


def labels_in(sessions: Sequence[Sequence[int]]) -> frozenset[int]:
    return frozenset(label for session in sessions for label in session)


def _filters_of(query: Query) -> Filters:
    return query.filter.filters if query.filter is not None else NO_FILTERS


def _apply_filters(scores: torch.Tensor, queries: Sequence[Query]) -> None:
    """Drop each query's filtered labels from its row of `scores`, one call per run of queries sharing a
    filter (a batch job's queries all share one)."""
    start = 0
    for end in range(1, len(queries) + 1):
        if end == len(queries) or queries[end].filter is not queries[start].filter:
            label_filter = queries[start].filter
            if label_filter is not None:
                label_filter.apply(scores[start:end], [q.sessions for q in queries[start:end]])
            start = end
