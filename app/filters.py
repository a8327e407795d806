"""Filters on a ranking: which labels may be recommended, applied to the scores before the top k.

No web framework here: the ranking routes and the batch command (`wdrec recommend`) build the same
`Filters` and let the `Recommender` apply them, so both rank the same way.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from app.errors import FilterConflictError, UnknownCategoriesError, closest
from training.dataset import Vocabulary

EXCLUDED = float("-inf")  # the score a filtered-out label gets; never a probability


@dataclass(frozen=True)
class Filters:
    """What a caller leaves out of a ranking, normalised (sorted, distinct) so that equal filters are one
    cache key. `clac1` empty means every top category."""

    exclude_bought: bool = False  # labels in the scored history (opt-in: repeats fill most grocery baskets)
    clac1: tuple[str, ...] = ()  # only labels of these top categories
    exclude_clac1: tuple[str, ...] = ()  # no label of these top categories
    exclude: tuple[str, ...] = ()  # no label of these names

    @classmethod
    def of(
        cls,
        *,
        exclude_bought: bool = False,
        clac1: Iterable[str] = (),
        exclude_clac1: Iterable[str] = (),
        exclude: Iterable[str] = (),
    ) -> Filters:
        """Filters from any iterables, sorted and without repeats."""
        return cls(exclude_bought, _distinct(clac1), _distinct(exclude_clac1), _distinct(exclude))

    @property
    def active(self) -> bool:
        return self.exclude_bought or bool(self.clac1 or self.exclude_clac1 or self.exclude)


NO_FILTERS = Filters()


@dataclass(frozen=True)
class LabelFilter:
    """Filters checked against a vocabulary: the labels they keep for any history, and whether a history's
    own labels are dropped too."""

    filters: Filters
    allowed: torch.Tensor | None  # bool [N]; None keeps every label
    n_allowed: int

    def apply(self, scores: torch.Tensor, histories: Sequence[Sequence[Sequence[int]]]) -> torch.Tensor:
        """`scores` [B, N] with every label this filter drops set to EXCLUDED (in place)."""
        if self.allowed is not None:
            scores.masked_fill_(~self.allowed, EXCLUDED)
        if self.filters.exclude_bought:
            scores.masked_fill_(bought_mask(histories, scores.shape[1]), EXCLUDED)
        return scores

    def kept(self, n_labels: int, bought: np.ndarray) -> np.ndarray:
        """bool [n_labels]: the labels this filter keeps for a history holding the label ids `bought`
        (`apply` for one ranking, in numpy)."""
        kept = np.ones(n_labels, dtype=np.bool_) if self.allowed is None else self.allowed.numpy().copy()
        if self.filters.exclude_bought:
            kept[bought] = False
        return kept


def bought_mask(histories: Sequence[Sequence[Sequence[int]]], n_labels: int) -> torch.Tensor:
    """bool [B, n_labels]: True where history b holds the label (in any of its sessions)."""
    counts = [sum(map(len, sessions)) for sessions in histories]
    labels = np.fromiter(
        itertools.chain.from_iterable(itertools.chain.from_iterable(histories)), np.int64, sum(counts)
    )
    mask = np.zeros((len(histories), n_labels), dtype=np.bool_)
    mask[np.repeat(np.arange(len(histories)), counts), labels] = True
    return torch.from_numpy(mask)


def compile_filters(
    filters: Filters, vocab: Vocabulary, label_ids: Callable[[Sequence[str]], list[int]]
) -> LabelFilter:
    """The filter for `vocab`; UnknownLabelsError (from `label_ids`) or UnknownCategoriesError for names
    the vocabulary lacks, FilterConflictError for filters that contradict each other."""
    _check_categories(vocab.clac1, clac1=filters.clac1, exclude_clac1=filters.exclude_clac1)
    both = sorted(set(filters.clac1) & set(filters.exclude_clac1))
    if both:
        raise FilterConflictError(
            f"clac1 and exclude_clac1 both name {', '.join(both)}",
            details={"conflict": ["clac1", "exclude_clac1"], "values": both},
        )
    excluded_ids = label_ids(filters.exclude)
    if not (filters.clac1 or filters.exclude_clac1 or excluded_ids):
        return LabelFilter(filters, None, vocab.n_labels)
    clac1_of = torch.tensor(vocab.label_clac1)
    allowed = torch.ones(vocab.n_labels, dtype=torch.bool)
    if filters.clac1:
        allowed = torch.isin(clac1_of, torch.tensor([vocab.clac1.index(c) for c in filters.clac1]))
    if filters.exclude_clac1:
        allowed &= ~torch.isin(clac1_of, torch.tensor([vocab.clac1.index(c) for c in filters.exclude_clac1]))
    allowed[excluded_ids] = False
    n_allowed = int(allowed.sum())
    if n_allowed == 0:
        used = [name for name in ("clac1", "exclude_clac1", "exclude") if getattr(filters, name)]
        raise FilterConflictError(
            f"The filters leave no label to recommend: {' and '.join(used)} together exclude all "
            f"{vocab.n_labels} labels",
            details={"conflict": used},
        )
    return LabelFilter(filters, allowed, n_allowed)


def _check_categories(known: Sequence[str], **fields: tuple[str, ...]) -> None:
    unknown = {field: [c for c in names if c not in known] for field, names in fields.items()}
    unknown = {field: names for field, names in unknown.items() if names}
    if unknown:
        names = sorted({c for names in unknown.values() for c in names})
        raise UnknownCategoriesError(
            # ~40 categories to compare with: cheap even for a long list of typos.
            {name: closest(name, known) for name in names},
            fields=sorted(unknown),
        )


def _distinct(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(values)))
