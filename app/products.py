"""Products inside recommended labels, ranked for one client (no web framework).

A label's list is, in this order: the client's own products of that label (most sessions first, then the
most recent), then the label's best sellers among clients of the same gender x age segment, then the label's
overall best sellers; each product once. Each product's score is P(label) x q, its share of the label for
this client: q = own sessions / (own sessions in the label + PRIOR_SESSIONS) for an own product, and
PRIOR_SESSIONS / (... same) x its share of the best-seller list for the others, capped by the previous
product's q so that scores never rise down a list. Flattened over several labels, those scores interleave
the labels' products (bench/products.py ranks a top-10 product list that way).

The tables stay numpy arrays in CSR form (one offset array per grouping) and Arrow strings: no Python
object per product, so a loaded catalogue of millions of products costs about its size on disk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

from training.products import TOP_PRODUCTS, ProductTables

# How many sessions' worth of weight the best sellers get against the client's own purchases of a label: a
# product bought once by the client comes before every best seller it has not bought.
PRIOR_SESSIONS = 1.0
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
        self._pd_c = catalogue["PD_C"].to_numpy()
        self._names, self._brands = catalogue["PD_NM"], catalogue["brand"]
        self._by_pd_c = np.argsort(self._pd_c, kind="stable")
        self._label_of = catalogue["label"].fill_null(-1).to_numpy()
        own = tables.clients
        self._own = _Csr.of(own["row"].to_numpy(), n_clients)
        self._own_label = own["label"].to_numpy()
        self._own_product = own["product"].to_numpy()
        self._own_sessions = own["sessions"].to_numpy()
        self._own_days = own["days_ago"].fill_null(-1).to_numpy()
        segments = tables.segments
        self.n_segments = int(segments["segment"].cast(pl.Int64).max() or 0) + 1  # type: ignore[arg-type]
        self._segment = _Csr.of(
            (segments["segment"].cast(pl.Int64) * n_labels + segments["label"]).to_numpy(),
            self.n_segments * n_labels,
        )
        self._segment_product, self._segment_sessions = (
            segments["product"].to_numpy(),
            segments["sessions"].to_numpy(),
        )
        labels = tables.labels
        self._label = _Csr.of(labels["label"].to_numpy(), n_labels)
        self._label_product = labels["product"].to_numpy()
        self._label_sessions = labels["sessions"].to_numpy()

    @property
    def n_products(self) -> int:
        return len(self._pd_c)

    def labels_of(self, pd_cs: Sequence[int]) -> list[int | None]:
        """The vocabulary label of each PD_C; None for a product not sold in the window or whose CLAC3 is
        not in the vocabulary."""
        wanted = np.asarray(pd_cs, dtype=np.int64)
        at = np.searchsorted(self._pd_c, wanted, sorter=self._by_pd_c).clip(0, max(self.n_products - 1, 0))
        rows = self._by_pd_c[at] if self.n_products else at
        found = (self._pd_c[rows] == wanted) if self.n_products else np.zeros(len(wanted), dtype=bool)
        labels = np.where(found, self._label_of[rows] if self.n_products else -1, -1)
        return [None if label < 0 else int(label) for label in labels.tolist()]

    def bought(self, row: int) -> frozenset[int]:
        """Catalogue rows of every product the client bought."""
        start, end = self._own.span(row)
        return frozenset(self._own_product[start:end].tolist())

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
        rows = [p[0] for pick in picks for p in pick]
        names = self._names.gather(rows).to_list()
        brands = self._brands.gather(rows).to_list()
        ranked, i = [], 0
        for (_, probability), pick in zip(labels, picks, strict=True):
            products = []
            for product, source, sessions, days, q in pick:
                products.append(
                    RankedProduct(
                        pd_c=int(self._pd_c[product]),
                        name=names[i],
                        brand=brands[i],
                        source=source,
                        sessions=sessions,
                        days_ago=None if days < 0 else days,
                        score=probability * q,
                    )
                )
                i += 1
            ranked.append(products)
        return ranked

    def _pick(
        self, label: int, *, n: int, row: int | None, segment: int, own: bool
    ) -> list[tuple[int, Source, int, int, float]]:
        """(catalogue row, source, own sessions, days ago or -1, q) of the label's first n products; `own`
        False leaves out the client's own products (a product belongs to one label: those of this label)."""
        mine = self._own_slice(row, label)
        total = float(self._own_sessions[mine].sum()) + PRIOR_SESSIONS
        picked: list[tuple[int, Source, int, int, float]] = []
        if own:
            for j in range(mine.start, min(mine.stop, mine.start + n)):
                sessions, days = int(self._own_sessions[j]), int(self._own_days[j])
                picked.append((int(self._own_product[j]), "bought", sessions, days, sessions / total))
        seen = set(self._own_product[mine].tolist())
        q = picked[-1][4] if picked else 1.0
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
                    q = min(q, PRIOR_SESSIONS / total * float(counts[j]) / list_total)
                    picked.append((product, source, 0, -1, q))
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
