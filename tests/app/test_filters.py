from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch

from app.errors import FilterConflictError, UnknownCategoriesError, UnknownLabelsError
from app.filters import EXCLUDED, Filters, LabelFilter, compile_filters
from training.dataset import Vocabulary

# Labels 0..4: 0, 1 in 식품; 2, 3 in 의류; 4 in 가전.
VOCAB = Vocabulary(
    labels=["우유", "과자", "남성의류", "여성의류", "냉장고"],
    label_clac1=[0, 0, 1, 1, 2],
    clac1=["식품", "의류", "가전"],
)
IDS = {name: i for i, name in enumerate(VOCAB.labels)}


def label_ids(names: Sequence[str]) -> list[int]:
    unknown = [name for name in names if name not in IDS]
    if unknown:
        raise UnknownLabelsError({name: [] for name in unknown})
    return [IDS[name] for name in names]


def compiled(**filters: object) -> LabelFilter:
    return compile_filters(Filters.of(**filters), VOCAB, label_ids)  # type: ignore[arg-type]


def kept(label_filter: LabelFilter, histories: Sequence[Sequence[Sequence[int]]] = ([],)) -> list[list[int]]:
    scores = label_filter.apply(torch.rand(len(histories), VOCAB.n_labels), histories)
    return [torch.nonzero(row != EXCLUDED).flatten().tolist() for row in scores]


def test_filters_are_normalised_so_equal_filters_are_one_key() -> None:
    one = Filters.of(clac1=["의류", "식품", "의류"], exclude=["b", "a"])
    other = Filters.of(clac1=("식품", "의류"), exclude={"a", "b"})
    assert one == other and hash(one) == hash(other)
    assert one.clac1 == ("식품", "의류") and one.active and not Filters().active


def test_clac1_keeps_only_labels_of_those_categories() -> None:
    assert kept(compiled(clac1=["식품", "가전"])) == [[0, 1, 4]]


def test_exclude_clac1_and_exclude_drop_their_labels() -> None:
    assert kept(compiled(exclude_clac1=["의류"], exclude=["우유"])) == [[1, 4]]


def test_exclude_bought_drops_each_rows_own_history() -> None:
    label_filter = compiled(exclude_bought=True, exclude=["냉장고"])
    assert label_filter.allowed is not None and label_filter.n_allowed == 4
    assert kept(label_filter, [[[0], [0, 2]], [], [[3]]]) == [[1, 3], [0, 1, 2, 3], [0, 1, 2]]


def test_only_exclude_bought_needs_no_label_mask() -> None:
    label_filter = compiled(exclude_bought=True)
    assert label_filter.allowed is None and label_filter.n_allowed == VOCAB.n_labels


def test_a_category_both_asked_for_and_excluded_is_a_conflict_naming_it() -> None:
    with pytest.raises(FilterConflictError) as caught:
        compiled(clac1=["식품", "의류"], exclude_clac1=["의류"])
    assert "의류" in caught.value.message
    assert caught.value.details == {"conflict": ["clac1", "exclude_clac1"], "values": ["의류"]}


def test_filters_that_leave_no_label_are_a_conflict() -> None:
    with pytest.raises(FilterConflictError) as caught:
        compiled(clac1=["식품"], exclude=["우유", "과자"])
    assert caught.value.details == {"conflict": ["clac1", "exclude"]}
    with pytest.raises(FilterConflictError):
        compiled(exclude_clac1=VOCAB.clac1)


def test_unknown_categories_are_named_with_their_field_and_suggestions() -> None:
    with pytest.raises(UnknownCategoriesError) as caught:
        compiled(clac1=["식품"], exclude_clac1=["의류x"])
    details = caught.value.details
    assert details["fields"] == ["exclude_clac1"] and details["unknown"] == ["의류x"]
    assert details["suggestions"]["의류x"][0] == "의류"


def test_unknown_excluded_labels_are_refused() -> None:
    with pytest.raises(UnknownLabelsError):
        compiled(exclude=["우유", "없는상품"])
