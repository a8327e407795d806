"""An artifact set in memory -> scores for every CLAC3 label -> top-k.

No web framework here: a script or a batch job can use a `Recommender` as it is. Features come only from
the artifact set's `FeatureBuilder` (the code training used), so served scores equal training-side scores.
A client's history is the artifact set's sessions followed by the sessions recorded since (`app.live`);
the recommender caches no ranking: what may be cached, and for how long, is the caller's business.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from app.errors import (
    InvalidQueryError,
    ProductsUnavailableError,
    UnknownClientError,
    UnknownLabelsError,
    UnknownProductsError,
    closest,
)
from app.filters import NO_FILTERS, Filters, LabelFilter, compile_filters
from app.live import LiveClient, RecordedSession, StoredRanking
from app.lru import LruCache
from app.products import MAX_PRODUCTS, ProductRanker, RankedProduct
from training.artifacts import ArtifactSet, load_artifacts
from training.dataset import UNKNOWN
from training.features import EPOCH, ModelInputs, day_number
from training.products import ProductTables
from training.topk import stable_topk

logger = logging.getLogger(__name__)

MAX_SUGGESTED = 10  # unknown labels that get suggestions; the rest are listed without
FILTER_CACHE_SIZE = 256  # distinct filters kept checked per loaded version
# A client's scores must be the same bits whoever else shares its forward pass (a lone request, an API
# micro-batch, `wdrec recommend`'s 128): two labels tied to the last bit swapped places between them. Two
# things round a row differently by where it sits: the CPU's matrix kernels in a product of fewer than 4
# rows (other kernels), and the vectorised exp / log / sigmoid, which leave a tensor's last few elements,
# in its last row, to a scalar loop. So each batch goes through the graph with copies of its last row
# appended, at least one and up to MIN_ROWS rows in all (tests/app/test_batch_invariance.py).
MIN_ROWS = 4


class TopK(NamedTuple):
    """A ranking: the best labels' scores and ids (best first), the labels of the scored history, and how
    many labels the filters left (fewer than k come back when fewer remain). Plain Python values: whichever
    thread reads a ranking (the event loop, for a request) never holds a tensor, whose release would hand
    the GIL to the scoring threads mid-response."""

    scores: list[float]  # the float32 scores, widened exactly
    label_ids: list[int]
    bought: frozenset[int]
    candidates: int


class BatchRanking(NamedTuple):
    """A batch's rankings: each row's best labels' scores and ids [B, k], best first (a row's entries past
    its `candidates` are labels the filters dropped), and how many labels the filters left in each row."""

    scores: torch.Tensor
    label_ids: torch.Tensor
    candidates: list[int]


@dataclass(frozen=True)
class Session:
    """A session on the read path: its distinct label ids (of the loaded vocabulary, ascending) and its
    date when known (recorded sessions have one; training sessions where the data had SESS_DT)."""

    labels: list[int]
    date: dt.date | None = None


@dataclass(frozen=True)
class Query:
    """One ranking to compute: a history (each session's label ids, oldest first) with each session's day
    number (None where unknown), demographic codes, how many labels, the filters."""

    history: Sequence[Sequence[int]]
    days: Sequence[int | None]
    gender: int
    age: int
    k: int
    filter: LabelFilter | None = None
    today: dt.date | None = None  # the reference date of the calendar features (None: no dates)

    @classmethod
    def as_of(
        cls,
        history: Sequence[Sequence[int]],
        days: Sequence[int | None],
        gender: int,
        age: int,
        *,
        k: int,
        filter: LabelFilter | None,
        today: dt.date | None,
    ) -> Query:
        """The query of the sessions on or before `today` (a ranking as of a past date sees only what
        happened by then; undated sessions are kept)."""
        if today is not None:
            limit = day_number(today)
            if any(day is not None and day > limit for day in days):
                kept = [i for i, day in enumerate(days) if day is None or day <= limit]
                history, days = [history[i] for i in kept], [days[i] for i in kept]
        return cls(history, days, gender, age, k=k, filter=filter, today=today)

    @property
    def dates(self) -> list[dt.date | None]:
        """The sessions' dates (None where unknown)."""
        return [None if day is None else EPOCH + dt.timedelta(days=day) for day in self.days]

    @property
    def today_number(self) -> int | None:
        return None if self.today is None else day_number(self.today)


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
    """A client's current state: demographics ("?" / 0 when unknown; a recorded value wins over the
    training data's), the training data's sessions and the recorded ones, each oldest first."""

    client_id: int
    gender: str
    age: int
    sessions: list[Session]  # the artifacts' sessions of the client (none if unknown to training)
    recorded: tuple[RecordedSession, ...]  # as recorded, labels by name
    history: list[Session]  # what the model scores: `sessions`, then the recorded ones it can read
    in_training: bool


class ProductLabels:
    """PD_C -> label id over the artifact set's catalogue, as two sorted arrays (a few bytes per product,
    where a dict would take ~100: the original data set sells ~800k products)."""

    NO_LABEL = -1  # in the catalogue, but its CLAC3 is not a label the model scores
    MISSING = -2  # not in the catalogue

    def __init__(self, codes: np.ndarray, labels: np.ndarray) -> None:
        order = np.argsort(codes, kind="stable")
        self._codes, self._labels = codes[order], labels[order]

    @classmethod
    def of(cls, tables: ProductTables | None) -> ProductLabels:
        if tables is None:
            return cls(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
        catalogue = tables.catalogue
        labels = catalogue["label"].fill_null(cls.NO_LABEL).to_numpy().astype(np.int64)
        return cls(catalogue["PD_C"].to_numpy().astype(np.int64), labels)

    def __contains__(self, code: object) -> bool:
        return isinstance(code, int) and self.lookup([code])[0] != self.MISSING

    def lookup(self, codes: Sequence[int]) -> list[int]:
        """Each code's label id; NO_LABEL or MISSING (both negative) where it has none."""
        if not len(self._codes):
            return [self.MISSING] * len(codes)
        wanted = np.asarray(codes, dtype=np.int64)
        at = np.minimum(np.searchsorted(self._codes, wanted), len(self._codes) - 1)
        found = self._codes[at] == wanted
        return np.where(found, self._labels[at], self.MISSING).tolist()


class Recommender:
    """Scores label sets for histories with the artifact set's model; thread-safe for concurrent requests."""

    def __init__(self, artifacts: ArtifactSet, *, max_k: int = 100) -> None:
        self.artifacts = artifacts
        self.vocab = artifacts.vocab
        self.metadata: dict[str, Any] = artifacts.metadata
        self.max_k = min(max_k, self.vocab.n_labels)
        self._label_ids = {name: i for i, name in enumerate(self.vocab.labels)}
        clients = artifacts.clients
        self._client_ids: list[int] = clients["CLNT_ID"].to_list()
        self._row_of = {cid: row for row, cid in enumerate(self._client_ids)}
        self._genders: list[int] = clients["gender"].to_list()
        self._ages: list[int] = clients["age"].to_list()
        self._sessions: list[list[list[int]]] = clients["sessions"].to_list()
        self._days: list[list[int | None]] = clients["days"].to_list()
        tables = artifacts.products
        self.products = (
            None
            if tables is None
            else ProductRanker(
                tables, n_clients=clients.height, n_labels=self.vocab.n_labels, n_ages=len(self.vocab.ages)
            )
        )
        self._product_label = ProductLabels.of(tables)  # PD_C -> label id, for recorded sessions
        # Doc2Vec inference reseeds the model's RNG before each call (determinism): one caller at a time.
        self._features_lock = threading.Lock()
        self._filters: LruCache[Filters, LabelFilter] = LruCache(FILTER_CACHE_SIZE)

    @classmethod
    def load(cls, path: Path, *, max_k: int = 100) -> Recommender:
        """Load and verify an artifact set (raises training.errors.ArtifactError naming the file)."""
        return cls(load_artifacts(path), max_k=max_k)

    @property
    def version(self) -> str:
        return str(self.metadata["version"])

    @property
    def max_sessions(self) -> int:
        """How many of a history's newest sessions the model sees."""
        return self.artifacts.builder.schema.max_sessions

    @property
    def n_clients(self) -> int:
        return len(self._client_ids)

    def clients(self, *, limit: int, offset: int) -> list[tuple[int, int]]:
        """(client ID, number of kept sessions) for one page of the client table, in table order."""
        rows = range(offset, min(offset + limit, self.n_clients))
        return [(self._client_ids[row], len(self._sessions[row])) for row in rows]

    def client(self, client_id: int, live: LiveClient | None = None) -> ClientProfile:
        """The client's demographics and sessions, the training data's then the recorded ones (`live`);
        UnknownClientError if the client is in neither."""
        row = self._known_row(client_id, live)
        gender, age = self._demographics(row, live)
        sessions = self._training_sessions(row) if row is not None else []
        recorded = live.sessions if live is not None else ()
        return ClientProfile(
            client_id=client_id,
            gender=self.vocab.genders[gender],
            age=self.vocab.ages[age],
            sessions=sessions,
            recorded=recorded,
            history=sessions + self._readable(client_id, recorded),
            in_training=row is not None,
        )

    def _known_row(self, client_id: int, live: LiveClient | None) -> int | None:
        """The client's row in the client table (None: recorded only); UnknownClientError if in neither."""
        row = self._row_of.get(client_id)
        if row is None and live is None:
            raise UnknownClientError(client_id)
        return row

    def _demographics(self, row: int | None, live: LiveClient | None) -> tuple[int, int]:
        """Gender and age codes: a recorded value wins over the client table's; UNKNOWN where neither has
        one."""
        gender = self._genders[row] if row is not None else UNKNOWN
        age = self._ages[row] if row is not None else UNKNOWN
        if live is not None and live.gender is not None:
            gender = self.vocab.genders.index(live.gender)
        if live is not None and live.age is not None:
            age = self.vocab.ages.index(live.age)
        return gender, age

    def _training_sessions(self, row: int) -> list[Session]:
        """The sessions of client table row `row`, dated where the training data had dates."""
        return [
            Session(labels, None if day is None else EPOCH + dt.timedelta(days=day))
            for labels, day in zip(self._sessions[row], self._days[row], strict=True)
        ]

    def _readable(self, client_id: int, recorded: Sequence[RecordedSession]) -> list[Session]:
        """Recorded sessions in this version's label ids; labels it does not know (a session recorded
        under another version's vocabulary) are left out, and a session left empty is skipped."""
        sessions = []
        for item in recorded:
            ids = sorted({self._label_ids[name] for name in item.labels if name in self._label_ids})
            if len(ids) < len(item.labels):
                logger.warning(
                    "client %d session %s: labels unknown to version %s skipped",
                    client_id,
                    item.session_id,
                    self.version,
                )
            if ids:
                sessions.append(Session(ids, item.date))
        return sessions

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

    def product_labels(self, products: Sequence[int]) -> tuple[str, ...]:
        """The distinct labels of PD_C codes (Master's CLAC3), in the order given; UnknownProductsError
        listing every code the artifact set's catalogue lacks or whose label this model does not score."""
        ids = self._product_label.lookup(products)
        if any(label_id < 0 for label_id in ids):
            pairs = zip(products, ids, strict=True)
            codes = list(dict.fromkeys(code for code, label_id in pairs if label_id < 0))
            without = [code for code in codes if code in self._product_label]
            raise UnknownProductsError(codes, without_label=without)
        return tuple(dict.fromkeys(self.vocab.labels[label_id] for label_id in ids))

    def clac1_of(self, label: str) -> str | None:
        """The CLAC1 of a label name; None if this version does not know the label."""
        label_id = self._label_ids.get(label)
        return None if label_id is None else self.vocab.clac1[self.vocab.label_clac1[label_id]]

    def score_histories(
        self,
        histories: Sequence[Sequence[Sequence[int]]],
        genders: Sequence[int],
        ages: Sequence[int],
        days: Sequence[Sequence[int | None]] | None = None,
        today: Sequence[int | None] | None = None,
    ) -> torch.Tensor:
        """Probabilities [B, N] for B histories (label ids, oldest session first) and vocabulary codes;
        `days` / `today`: the sessions' and the reference date's day numbers (see FeatureBuilder)."""
        with torch.inference_mode():
            with self._features_lock:
                inputs = self.artifacts.builder.build_batch(histories, genders, ages, days, today)
            return torch.sigmoid(self.artifacts.model(*inputs))

    def model_inputs(self, queries: Sequence[Query]) -> ModelInputs:
        """The model's inputs for the queries' histories, dates and demographics (what `top` scores)."""
        with self._features_lock:
            return self.artifacts.builder.build_batch(
                [q.history for q in queries],
                [q.gender for q in queries],
                [q.age for q in queries],
                [q.days for q in queries],
                [q.today_number for q in queries],
            )

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

    def scores(self, queries: Sequence[Query]) -> torch.Tensor:
        """Every label's probability for each query [B, N], from one batched forward pass: the same bits
        whatever else the batch holds (MIN_ROWS), unfiltered. An inference tensor."""
        inputs = with_pad_rows(self.model_inputs(queries))
        with torch.inference_mode():
            return torch.sigmoid(self.artifacts.model(*inputs))[: len(queries)]

    def rank_batch(self, queries: Sequence[Query], k: int) -> BatchRanking:
        """The first k labels of each query from one batched forward pass, filtered labels left out before
        the top k."""
        scores = self.scores(queries)
        with torch.inference_mode():  # scores is an inference tensor: updated in place only in this mode
            _apply_filters(scores, queries)
        candidates = torch.isfinite(scores).sum(dim=1).tolist()
        indices = stable_topk(scores, k)  # ties to the lower label id, as in any batch and for any k
        return BatchRanking(scores.gather(1, indices), indices, candidates)

    def stored_top(self, stored: StoredRanking, filters: Filters, k: int) -> TopK:
        """The first k labels of a stored ranking (computed by `scores`, ordered by `stable_topk`) under
        `filters`: those `top` ranks first for the query it was computed from with those filters (dropping
        labels from a stable order leaves the rest in the order a stable sort of what is left gives)."""
        label_filter = self.label_filter(filters)
        order = (
            stored.order
            if label_filter is None
            else stored.order[label_filter.kept(len(stored.scores), stored.bought)[stored.order]]
        )
        label_ids = order[:k]
        return TopK(
            stored.scores[label_ids].tolist(),
            label_ids.tolist(),
            frozenset(stored.bought.tolist()),
            len(order),
        )

    def top(self, queries: Sequence[Query]) -> list[TopK]:
        """The top-k of each query (`rank_batch`), each with the labels of its history."""
        return self.split(queries, self.rank_batch(queries, max(q.k for q in queries)))

    @staticmethod
    def split(queries: Sequence[Query], batch: BatchRanking) -> list[TopK]:
        """Each query's ranking (up to its k labels) out of their batch's."""
        lengths = [min(query.k, left) for query, left in zip(queries, batch.candidates, strict=True)]
        width = max(lengths, default=0)
        scores, label_ids = batch.scores[:, :width].tolist(), batch.label_ids[:, :width].tolist()
        return [
            TopK(scores[row][:n], label_ids[row][:n], labels_in(query.history), left)
            for row, (query, left, n) in enumerate(zip(queries, batch.candidates, lengths, strict=True))
        ]

    def ranked(self, entry: TopK, k: int) -> list[ScoredLabel]:
        """The first k labels of a ranking, best first, marking labels the history holds."""
        values, indices, bought = entry.scores[:k], entry.label_ids[:k], entry.bought
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

    def client_query(
        self,
        client_id: int,
        filters: Filters = NO_FILTERS,
        live: LiveClient | None = None,
        today: dt.date | None = None,
    ) -> Query:
        """The top max_k query of a client on date `today`: its whole history, the training data's sessions
        then the recorded ones (`live`; the builder keeps the most recent)."""
        row = self._known_row(client_id, live)
        gender, age = self._demographics(row, live)
        # The client table's lists as they are (day numbers, no Session objects: this runs per request).
        history: list[list[int]] = self._sessions[row] if row is not None else []
        days: list[int | None] = self._days[row] if row is not None else []
        recorded = self._readable(client_id, live.sessions) if live is not None else []
        if recorded:
            history = history + [session.labels for session in recorded]
            days = days + [None if session.date is None else day_number(session.date) for session in recorded]
        return Query.as_of(
            history,
            days,
            gender,
            age,
            k=self.max_k,
            filter=self.label_filter(filters),
            today=today,
        )

    def row_query(self, row: int, filters: Filters = NO_FILTERS, today: dt.date | None = None) -> Query:
        """The query of the client in row `row` of the client table (see `n_clients`) on date `today`: its
        training sessions only (a batch job over the artifacts)."""
        return Query.as_of(
            self._sessions[row],
            self._days[row],
            self._genders[row],
            self._ages[row],
            k=self.max_k,
            filter=self.label_filter(filters),
            today=today,
        )

    def recommend(
        self,
        client_id: int,
        k: int,
        filters: Filters = NO_FILTERS,
        live: LiveClient | None = None,
        today: dt.date | None = None,
    ) -> list[ScoredLabel]:
        """Top-k for a client known to training or with a recorded state (`live`), as of `today` (what
        GET /recommend ranks with `date=today`; None: without the calendar features)."""
        self.check_k(k)
        return self.ranked(self.top([self.client_query(client_id, filters, live, today)])[0], k)

    def label_products(
        self,
        items: Sequence[ScoredLabel],
        *,
        n: int,
        client_id: int | None = None,
        live: LiveClient | None = None,
        gender: str | None = None,
        age: int | None = None,
        exclude_bought: bool = False,
    ) -> list[list[RankedProduct]]:
        """Up to n products in each ranked label: a client's own first (as the training data holds them),
        then best sellers of their gender x age segment (or of `gender` / `age` for a custom query), then
        the label's best sellers; `exclude_bought` leaves out the client's own products."""
        if not 0 <= n <= MAX_PRODUCTS:
            raise InvalidQueryError(f"products must be between 0 and {MAX_PRODUCTS}", details={"products": n})
        if n == 0:
            return [[] for _ in items]
        if self.products is None:
            raise ProductsUnavailableError(self.version)
        row = None if client_id is None else self._row_of.get(client_id)
        if client_id is not None:
            profile = self.client(client_id, live)
            gender, age = profile.gender if profile.gender != "?" else None, profile.age or None
        codes = self.demographic_codes(gender, age)
        labels = [(item.label_id, item.score) for item in items]
        return self.products.rank(
            labels, n=n, row=row, gender=codes[0], age=codes[1], exclude_bought=exclude_bought
        )

    def row_of(self, client_id: int) -> int:
        """The client's row in the client table; UnknownClientError if not in it."""
        return self._row(client_id)

    def knows(self, client_id: int) -> bool:
        """Whether the client table holds the client."""
        return client_id in self._row_of

    @property
    def client_ids(self) -> Sequence[int]:
        """The client table's IDs, in table order."""
        return self._client_ids

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
        dates: Sequence[dt.date] | None = None,
        today: dt.date | None = None,
    ) -> Query:
        """The query of a custom history whose newest session is `basket`; demographics alone: cold start.
        `dates`: one per non-empty session (history, then basket) and `today` the reference date (by
        default the newest of them); without them the model sees no dates."""
        named = [session for session in (*history, basket) if session]
        self.label_ids([name for session in named for name in session])  # every unknown label, one error
        if dates is not None:
            _check_dates(dates, len(named), today)
            today = today or max(dates, default=None)
        # A session is its distinct labels in ascending id order, as in the processed data set.
        sessions = [sorted({self._label_ids[name] for name in session}) for session in named]
        if not sessions and gender is None and age is None:
            raise InvalidQueryError("Nothing to score: give a basket, a history, a gender or an age")
        return Query(
            sessions,
            [day_number(date) for date in dates] if dates is not None else [None] * len(sessions),
            *self.demographic_codes(gender, age),
            k=self.check_k(k),
            filter=self.label_filter(filters),
            today=today,
        )

    def rank(self, query: Query) -> list[ScoredLabel]:
        """The query's top-k labels, best first (one forward pass)."""
        return self.ranked(self.top([query])[0], query.k)

    def check_k(self, k: int) -> int:
        """`k` if 1 <= k <= max_k, else InvalidQueryError."""
        if not 1 <= k <= self.max_k:
            raise InvalidQueryError(f"k must be between 1 and {self.max_k}", details={"k": k})
        return k

    def demographic_codes(self, gender: str | None, age: int | None) -> tuple[int, int]:
        """Vocabulary codes of a gender and an age (None: unknown); InvalidQueryError for other values."""
        return self._code(gender, self.vocab.genders, "gender"), self._code(age, self.vocab.ages, "age")

    @staticmethod
    def _code(value: str | int | None, codes: Sequence[str | int], field: str) -> int:
        """The vocabulary index of a demographic value; None is UNKNOWN (index 0, never a real code)."""
        if value is None:
            return UNKNOWN
        if value not in codes[1:]:
            raise InvalidQueryError(f"Unknown {field} {value!r}", details={"known": list(codes[1:])})
        return list(codes).index(value)


def labels_in(sessions: Sequence[Sequence[int]]) -> frozenset[int]:
    return frozenset(itertools.chain.from_iterable(sessions))


def with_pad_rows(inputs: ModelInputs) -> ModelInputs:
    """`inputs` of B >= 1 rows followed by copies of their last row, at least one and up to MIN_ROWS rows
    in all: the graph's first B output rows are then the same bits in any batch (see MIN_ROWS)."""
    rows = max(inputs.hist.shape[0] + 1, MIN_ROWS)
    return ModelInputs(*(padded_to(x, rows) for x in inputs))


def padded_to(x: torch.Tensor, rows: int) -> torch.Tensor:
    """`x` [B, ...] followed by copies of its last row up to `rows` rows (another input of a padded batch)."""
    return torch.cat([x, x[-1:].expand(rows - x.shape[0], *x.shape[1:])])


def _apply_filters(scores: torch.Tensor, queries: Sequence[Query]) -> None:
    """Drop each query's filtered labels from its row of `scores`, one call per run of queries sharing a
    filter (a batch job's queries all share one)."""
    start = 0
    for end in range(1, len(queries) + 1):
        if end == len(queries) or queries[end].filter is not queries[start].filter:
            label_filter = queries[start].filter
            if label_filter is not None:
                label_filter.apply(scores[start:end], [q.history for q in queries[start:end]])
            start = end


def _check_dates(dates: Sequence[dt.date], n_sessions: int, today: dt.date | None) -> None:
    """InvalidQueryError unless there is one date per session, oldest first, none after `today`."""
    if len(dates) != n_sessions:
        raise InvalidQueryError(
            f"dates holds {len(dates)} dates for {n_sessions} non-empty sessions (history, then basket)",
            details={"dates": len(dates), "sessions": n_sessions},
        )
    if any(later < earlier for earlier, later in itertools.pairwise(dates)):
        raise InvalidQueryError("dates must be oldest first, like the sessions")
    if today is not None and dates and max(dates) > today:
        raise InvalidQueryError(
            f"a session dated {max(dates)} is after the reference date {today}", details={"date": str(today)}
        )
