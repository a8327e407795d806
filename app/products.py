"""Products inside recommended labels, ranked for one client (no web framework).

A label's list is, in this order: the client's own products of that label (the highest recency-decayed
weight first: how often and how recently, see training/products.py), then the label's best sellers among
clients of the same gender x age segment, then the label's overall best sellers; each product once. Each
product's score is P(label) x q, q its share of the label for this client, P(product | label, client):
q = its weight / (the label's weight + PRIOR_WEIGHT) for an own product (the weight of a label: the client's
sessions that bought anything of it, decayed alike), and PRIOR_WEIGHT / (... same) x its share of the
best-seller list for the others, capped by the previous product's q so that scores never rise down a list.
`flatten` merges the lists of a label ranking's first FLAT_LABELS labels into one product ranking by
P(label) ^ LABEL_SHARPNESS x P(product | label, client), so the labels' products interleave.

The tables stay memory-mapped numpy views in CSR form (one offset array per grouping) and Arrow strings: no
Python object per product and no copy of a table, so a loaded version costs about its size on disk, in
pages every worker process shares.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
import polars as pl

from training.products import TOP_PRODUCTS, ProductTables

# The settings below were chosen by the validation NDCG@10 of `flatten` on The Complete Journey
# (bench/products.py; never on its test baskets): of half-lives 15..365 days x prior weights 0.25..4 x
# FLAT_LABELS 10, 20, 40 x LABEL_SHARPNESS 0.5..8. How much decayed weight (a purchase in the client's newest
# session weighs 1) the best sellers get against the client's own sessions of a label; own products still
# come first in each label's list.
PRIOR_WEIGHT = 1.0
# How many of a label ranking's first labels `flatten` draws products from.
FLAT_LABELS = 20
# The power of P(label) when labels' products are flattened into one list: the model's scores come from a
# ranking loss, not calibrated probabilities (validation NDCG@10 0.181 at 1, 0.194 at 4).
LABEL_SHARPNESS = 4.0
MAX_PRODUCTS = TOP_PRODUCTS
Source = Literal["bought", "segment", "label"]


@dataclass(frozen=True)
class RankedProduct:
    """One product of a recommended label."""

    pd_c: int
    name: str | None
    brand: str | None
    source: Source  # "bought": the client's own; "segment": popular with similar clients; "label": top seller
    sessions: int  # the client's sessions that bought it (0 unless source is "bought")
    days_ago: int | None  # days from the newest purchase to the end of the data window; None without dates
    score: float


def flatten(
    labels: Sequence[tuple[int, float]], lists: Sequence[list[RankedProduct]], *, n: int
) -> list[RankedProduct]:
    """One product ranking from a label ranking (best first, as (label, P(label))) and `ProductRanker.rank`'s
    lists for its first FLAT_LABELS labels: the n products of highest P(label) ^ LABEL_SHARPNESS x q."""
    ranked = [
        (probability ** (LABEL_SHARPNESS - 1) * p.score, p)  # score = P(label) x q
        for (_, probability), products in zip(labels[:FLAT_LABELS], lists, strict=True)
        for p in products
    ]
    ranked.sort(key=lambda pair: -pair[0])
    return [p for _, p in ranked[:n]]


class _Pick(NamedTuple):
    """A product picked for a label: catalogue row, source, its row of the client table (-1: not own), q."""

    product: int
    source: Source
    own_row: int
    q: float


def _view(column: pl.Series) -> np.ndarray:
    """A numeric column without nulls as numpy: a read-only view of its (memory-mapped) buffer when it is one
    chunk, as the loaded tables are, else a copy. Polars' own conversion: pyarrow's imports pandas, 36 MB of
    modules in every worker."""
    return column.to_numpy(allow_copy=column.n_chunks() > 1)


@dataclass(frozen=True)
class _Csr:
    """Rows of a table grouped by a sorted integer key: group g is rows offsets[g]:offsets[g + 1]."""

    offsets: np.ndarray

    @classmethod
    def of(cls, keys: np.ndarray, n_groups: int) -> _Csr:
        return cls(np.searchsorted(keys, np.arange(n_groups + 1)).astype(np.int64))

    def span(self, group: int) -> tuple[int, int]:
        return int(self.offsets[group]), int(self.offsets[group + 1])


class ProductRanker:
    """The product tables of one artifact version, in memory, and the ranking of a label's products."""

    def __init__(self, tables: ProductTables, *, n_clients: int, n_labels: int, n_ages: int) -> None:
        self.n_labels, self.n_ages = n_labels, n_ages
        catalogue = tables.catalogue
        self._pd_c = _view(catalogue["PD_C"])
        self._names, self._brands = catalogue["PD_NM"], catalogue["brand"]
        own = tables.clients
        self._own = _Csr.of(_view(own["row"]), n_clients)
        self._own_label = _view(own["label"])
        self._own_product = _view(own["product"])
        self._own_sessions = _view(own["sessions"])
        self._own_weight = _view(own["weight"])
        self._own_label_weight = _view(own["label_weight"])
        self._own_days = own["days_ago"]  # nullable: read per product picked
        segments = tables.segments
        self.n_segments = int(segments["segment"].cast(pl.Int64).max() or 0) + 1  # type: ignore[arg-type]
        self._segment = _Csr.of(
            (segments["segment"].cast(pl.Int64) * n_labels + segments["label"]).to_numpy(),
            self.n_segments * n_labels,
        )
        self._segment_product, self._segment_sessions = (
            _view(segments["product"]),
            _view(segments["sessions"]),
        )
        labels = tables.labels
        self._label = _Csr.of(_view(labels["label"]), n_labels)
        self._label_product = _view(labels["product"])
        self._label_sessions = _view(labels["sessions"])

    def rank(
        self,
        labels: Sequence[tuple[int, float]],
        *,
        n: int,
        row: int | None,
        gender: int,
        age: int,
        exclude_bought: bool = False,
    ) -> list[list[RankedProduct]]:
        """Up to n products for each (label, P(label)), in the order of the module docstring; `row` is the
        client's table row (None: no own purchases); `exclude_bought` leaves out every product they bought."""
        segment = gender * self.n_ages + age
        picks = [
            self._pick(label, n=n, row=row, segment=segment, own=not exclude_bought) for label, _ in labels
        ]
        flat = [p for pick in picks for p in pick]
        names = self._names.gather([p.product for p in flat]).to_list()
        brands = self._brands.gather([p.product for p in flat]).to_list()
        days = iter(self._own_days.gather([p.own_row for p in flat if p.own_row >= 0]).to_list())
        ranked, i = [], 0
        for (_, probability), pick in zip(labels, picks, strict=True):
            products = []
            for p in pick:
                products.append(
                    RankedProduct(
                        pd_c=int(self._pd_c[p.product]),
                        name=names[i],
                        brand=brands[i],
                        source=p.source,
                        sessions=int(self._own_sessions[p.own_row]) if p.own_row >= 0 else 0,
                        days_ago=next(days) if p.own_row >= 0 else None,
                        score=probability * p.q,
                    )
                )
                i += 1
            ranked.append(products)
        return ranked

    def _pick(self, label: int, *, n: int, row: int | None, segment: int, own: bool) -> list[_Pick]:
        """The label's first n products with their q; `own` False leaves out the client's own products (a
        product belongs to one label: those of this label)."""
        mine = self._own_slice(row, label)
        total = (float(self._own_label_weight[mine.start]) if mine.stop > mine.start else 0.0) + PRIOR_WEIGHT
        picked: list[_Pick] = []
        if own:
            for j in range(mine.start, min(mine.stop, mine.start + n)):
                picked.append(
                    _Pick(int(self._own_product[j]), "bought", j, float(self._own_weight[j]) / total)
                )
        seen = set(self._own_product[mine].tolist())
        q = picked[-1].q if picked else 1.0
        tiers: tuple[tuple[Source, tuple[int, int], np.ndarray, np.ndarray], ...] = (
            ("segment", self._segment_span(segment, label), self._segment_product, self._segment_sessions),
            ("label", self._label.span(label), self._label_product, self._label_sessions),
        )
        for source, (start, end), products, counts in tiers:
            list_total = float(counts[start:end].sum()) or 1.0
            for j in range(start, end):
                if len(picked) >= n:
                    return picked
                product = int(products[j])
                if product not in seen:
                    q = min(q, PRIOR_WEIGHT / total * float(counts[j]) / list_total)
                    picked.append(_Pick(product, source, -1, q))
                    seen.add(product)
        return picked

    def _own_slice(self, row: int | None, label: int) -> slice:
        if row is None:
            return slice(0, 0)
        start, end = self._own.span(row)
        labels = self._own_label[start:end]
        first, last = np.searchsorted(labels, [label, label + 1])
        return slice(start + int(first), start + int(last))

    def _segment_span(self, segment: int, label: int) -> tuple[int, int]:
        if not 0 <= segment < self.n_segments:
            return (0, 0)
        return self._segment.span(segment * self.n_labels + label)
