"""The feature schema and the one way to turn histories into model inputs (training and serving alike).

Only raw ids leave this module: every wide cross and repeat feature is computed inside the model's graph
(training/model.py), so the exported model cannot disagree with the code that trained it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np
import polars as pl
import torch

from training.config import TrainConfig
from training.dataset import Vocabulary

PAD = -1  # id of an empty slot in `hist`
History = Sequence[Sequence[int]]  # sessions oldest first, each a list of label ids

# What the model derives from the raw inputs, as data: metadata.json carries it for readers and reviewers.
WIDE_FEATURES = (
    "clac1_multi_hot: CLAC1 of any history label",
    "clac1_x_gender_x_age: CLAC1 multi-hot crossed with gender and age code",
    "clac1_pair_x_age: unordered CLAC1 pairs of the history crossed with age code (low-rank weight)",
    "repeat: per label log1p(sessions holding it), share of sessions, recency 1/(1+sessions ago), "
    "decayed counts (0.5^ and 0.8^sessions ago); weights = shared vector + per-label offset",
    "calendar (where sessions are dated): per label log1p(days since last bought), log due-ness (those days "
    "over the expected gap: the client's own mean gap shrunk to the label's population gap), closeness to "
    "due, log1p(expected gap), day-decayed counts (e^-days/14, e^-days/60); shared + per-label weights",
    "copurchase: 0.5-decayed counts of the history through a low-rank label x label map",
    "start (start.baseline): the chosen baseline's score of the history (training/start.py): own basket "
    "sums weighted as TIFU-KNN, through the label similarity for ItemKNN, and TIFU-KNN's neighbour mean",
)
DEEP_FEATURES = (
    "client tower: gender and age embeddings, doc_vec, mean label embedding of the history -> every label",
    "candidate scorer, per (client, label) of the top candidates: that label's repeat, calendar and start "
    "features and its embedding, with the client tower's hidden state",
)


@dataclass(frozen=True)
class FeatureSchema:
    """Shapes and sizes both sides agree on; written to metadata.json["feature_schema"]."""

    max_sessions: int  # S
    max_labels: int  # L
    doc_dim: int  # D
    n_labels: int  # N
    n_clac1: int  # C
    n_genders: int
    n_ages: int
    d2v_infer_epochs: int
    d2v_seed: int
    wide_features: tuple[str, ...] = WIDE_FEATURES
    deep_features: tuple[str, ...] = DEEP_FEATURES
    inputs: tuple[str, ...] = ()  # the model's inputs in call order: MODEL_INPUTS (set in __post_init__)

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", self.inputs or MODEL_INPUTS)

    @classmethod
    def create(cls, vocab: Vocabulary, config: TrainConfig) -> FeatureSchema:
        return cls(
            max_sessions=config.data.max_sessions,
            max_labels=config.data.max_labels,
            doc_dim=config.doc2vec.vector_size,
            n_labels=vocab.n_labels,
            n_clac1=len(vocab.clac1),
            n_genders=len(vocab.genders),
            n_ages=len(vocab.ages),
            d2v_infer_epochs=config.doc2vec.infer_epochs,
            d2v_seed=config.seed,
        )

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FeatureSchema:
        values = {f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data}
        for name in ("wide_features", "deep_features", "inputs"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)


class ModelInputs(NamedTuple):
    """The model's raw inputs, in call order (`model(*inputs)`)."""

    hist: torch.Tensor  # int64 [B, S, L], right-aligned (newest session at S-1), padded with PAD
    ago: torch.Tensor  # float32 [B, S]: days from each session to the reference date; NO_DATE where a
    # slot is empty, and for the whole row when a session's date or the reference date is unknown
    gender: torch.Tensor  # int64 [B]
    age: torch.Tensor  # int64 [B]
    doc_vec: torch.Tensor  # float32 [B, D]


MODEL_INPUTS = ModelInputs._fields  # written to metadata.json: a version with other inputs is not servable
NO_DATE = -1.0
Days = Sequence[int | None]  # a history's session dates as day numbers (days since 1970-01-01)


def day_number(date: dt.date) -> int:
    """Days since 1970-01-01, the unit of every date the model sees."""
    return (date - EPOCH).days


EPOCH = dt.date(1970, 1, 1)


@dataclass(frozen=True)
class ClientRecord:
    """One client: demographics (vocab indices) and every kept session, oldest first, with its day number
    (None where unknown)."""

    clnt_id: int
    gender: int
    age: int
    sessions: list[list[int]]
    days: list[int | None] | None = None  # None: no dates at all

    @property
    def session_days(self) -> list[int | None]:
        return list(self.days) if self.days is not None else [None] * len(self.sessions)


@dataclass(frozen=True)
class Examples:
    """Next-session examples: predict `targets[i]` from `histories[i]` and the demographics; `days[i]` are
    the history's session dates and `target_days[i]` the target's (the reference date of its features)."""

    clnt_ids: list[int]
    histories: list[list[list[int]]]
    genders: list[int]
    ages: list[int]
    targets: list[list[int]]
    days: list[list[int | None]]
    target_days: list[int | None]

    def __len__(self) -> int:
        return len(self.targets)


def target_positions(n_sessions: int, split: str, *, newest: int | None = None) -> range:
    """Positions of a client's target sessions per the split rule of CONTRACTS.md (n-1 test, n-2 valid,
    1..n-3 train; with `newest`, only the newest that many train targets); a client too short for a split
    contributes nothing to it."""
    first = {"test": n_sessions - 1, "valid": n_sessions - 2, "train": 1}[split]
    stop = n_sessions - 2 if split == "train" else first + 1
    if split == "train" and newest is not None:
        first = max(first, stop - newest)
    return range(max(first, 1), stop)


def split_examples(records: Sequence[ClientRecord], split: str, *, newest: int | None = None) -> Examples:
    """Every example of `split` ("train", "valid" or "test"): a target session and all sessions before it
    (for "train", each client's `newest` targets only, if given)."""
    rows = [(r, t) for r in records for t in target_positions(len(r.sessions), split, newest=newest)]
    days = {r.clnt_id: r.session_days for r, _ in rows}
    return Examples(
        clnt_ids=[r.clnt_id for r, _ in rows],
        histories=[r.sessions[:t] for r, t in rows],
        genders=[r.gender for r, _ in rows],
        ages=[r.age for r, _ in rows],
        targets=[r.sessions[t] for r, t in rows],
        days=[days[r.clnt_id][:t] for r, t in rows],
        target_days=[days[r.clnt_id][t] for r, t in rows],
    )


def records_of(clients: pl.DataFrame) -> list[ClientRecord]:
    """The `ClientRecord`s of a clients table (clients.parquet: CLNT_ID, gender, age, sessions, days)."""
    rows = clients.select("CLNT_ID", "gender", "age", "sessions", "days").rows()
    return [
        ClientRecord(int(c), int(g), int(a), [list(map(int, s)) for s in sessions], list(days))
        for c, g, a, sessions, days in rows
    ]


def history_before_valid(record: ClientRecord) -> list[list[int]]:
    """Context and train-target sessions: what Doc2Vec and the baselines may learn from."""
    return record.sessions[: max(len(record.sessions) - 2, 0)]


class HistoryEncoder(Protocol):
    def infer(self, histories: Sequence[Sequence[Sequence[int]]]) -> np.ndarray: ...


class FeatureBuilder:
    """Histories + demographics -> ModelInputs; the only batch constructor of training and serving."""

    def __init__(self, vocab: Vocabulary, schema: FeatureSchema, encoder: HistoryEncoder) -> None:
        self.vocab = vocab
        self.schema = schema
        self.encoder = encoder

    def recent(self, history: Sequence[Sequence[int]]) -> list[Sequence[int]]:
        """The sessions the model sees: the newest S, each cut to its first L labels (the caller's own
        sequences where they are short enough: read, never changed)."""
        start, most = max(len(history) - self.schema.max_sessions, 0), self.schema.max_labels
        return [session if len(session) <= most else session[:most] for session in history[start:]]

    def hist_tensor(self, recent: Sequence[Sequence[Sequence[int]]]) -> torch.Tensor:
        """int64 [B, S, L] of `recent` histories (already cut by `recent`), right-aligned, PAD-filled; L is
        the batch's longest session (at most max_labels, at least 1): the graph reads any L, and PAD slots
        are work it would skip anyway."""
        s, n = self.schema.max_sessions, self.schema.n_labels
        sizes = np.fromiter(map(len, recent), np.int64, len(recent))
        lengths = np.fromiter((len(session) for sessions in recent for session in sessions), np.int64)
        hist = np.full((len(recent), s, max(int(lengths.max(initial=0)), 1)), PAD, dtype=np.int64)
        # Every label's (row, session slot, position) at once: one numpy assignment, no loop per session.
        labels = np.fromiter(
            itertools.chain.from_iterable(itertools.chain.from_iterable(recent)), np.int64, int(lengths.sum())
        )
        if labels.size and labels.max() >= n:
            raise ValueError(f"label id {int(labels.max())} outside the vocabulary of {n} labels")
        slot = np.arange(len(lengths)) + np.repeat(s - sizes - (np.cumsum(sizes) - sizes), sizes)
        position = np.arange(labels.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        hist[
            np.repeat(np.repeat(np.arange(len(recent)), sizes), lengths), np.repeat(slot, lengths), position
        ] = labels
        return torch.from_numpy(hist)

    def ago_tensor(self, days: Sequence[Days], today: Days) -> torch.Tensor:
        """float32 [B, S]: `today[b] - days[b][j]` per kept session, right-aligned like `hist_tensor`; a row
        is all NO_DATE when its reference date or any kept session's date is unknown (the model then falls
        back to its session-count features)."""
        s = self.schema.max_sessions
        pairs = zip(days, today, strict=True)
        kept = [list(sessions)[-s:] if ref is not None else [] for sessions, ref in pairs]
        sizes = np.fromiter(map(len, kept), np.int64, len(kept))
        rows = np.repeat(np.arange(len(kept)), sizes)
        refs = np.array([np.nan if ref is None else ref for ref in today], dtype=np.float64)
        # Every kept session at once; an undated session is NaN and leaves its whole row undated.
        ago = refs[rows] - np.array(list(itertools.chain.from_iterable(kept)), dtype=np.float64)
        dated = (np.bincount(rows, weights=np.isnan(ago), minlength=len(kept)) == 0)[rows]
        if (ago[dated] < 0).any():
            raise ValueError(f"a session dated after its reference date ({ago[dated].min():.0f} days)")
        # Right-aligned: a row's last session in column s - 1.
        place = np.arange(ago.size) - np.repeat(np.cumsum(sizes) - s, sizes)
        out = np.full((len(kept), s), NO_DATE, dtype=np.float32)
        out[rows[dated], place[dated]] = ago[dated]
        return torch.from_numpy(out)

    def build_batch(
        self,
        histories: Sequence[Sequence[Sequence[int]]],
        genders: Sequence[int],
        ages: Sequence[int],
        days: Sequence[Days] | None = None,
        today: Days | None = None,
    ) -> ModelInputs:
        """`histories[b]`: sessions oldest first, label ids; `genders`/`ages`: vocab indices; `days[b]`: each
        session's day number and `today[b]` the reference date's (see `ago_tensor`); without them the
        model sees no dates."""
        recent = [self.recent(history) for history in histories]
        no_dates: list[int | None] = [None] * len(histories)
        return ModelInputs(
            hist=self.hist_tensor(recent),
            ago=self.ago_tensor(days if days is not None else [[] for _ in histories], today or no_dates),
            gender=torch.as_tensor(list(genders), dtype=torch.int64),
            age=torch.as_tensor(list(ages), dtype=torch.int64),
            doc_vec=torch.from_numpy(self.encoder.infer(recent)),
        )

    def build_examples(self, examples: Examples) -> ModelInputs:
        """The inputs of next-session examples, each dated at its target session."""
        return self.build_batch(
            examples.histories, examples.genders, examples.ages, examples.days, examples.target_days
        )
