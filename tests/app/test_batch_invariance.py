"""A client's scores do not depend on who else shares its forward pass: a lone request, an API
micro-batch and `wdrec recommend`'s batches give the same bits (app/recommender.py, MIN_ROWS)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import torch

from app.batch import _torch_threads
from app.explain import explain_rankings
from app.recommender import MIN_ROWS, Query, Recommender, with_pad_rows
from training.artifacts import ArtifactSet

TODAY = dt.date(2026, 12, 3)


@pytest.fixture(scope="module")
def recommender(artifacts: ArtifactSet) -> Iterator[Recommender]:
    with _torch_threads(1):  # as the service and the batch job run each forward pass
        yield Recommender(artifacts)


@pytest.fixture(scope="module")
def queries(recommender: Recommender) -> list[Query]:
    return [recommender.row_query(row, today=TODAY) for row in range(recommender.n_clients)]


def test_pad_rows_are_copies_of_the_last_row(recommender: Recommender, queries: list[Query]) -> None:
    lone = with_pad_rows(recommender.model_inputs(queries[:1]))
    assert lone.hist.shape[0] == MIN_ROWS
    for tensor in lone:
        assert all(torch.equal(tensor[0], tensor[row]) for row in range(MIN_ROWS))
    nine = with_pad_rows(recommender.model_inputs(queries[:9]))
    assert nine.hist.shape[0] == 10
    assert all(torch.equal(tensor[8], tensor[9]) for tensor in nine)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 17, 128])
def test_every_client_scores_the_same_bits_in_any_batch(
    recommender: Recommender, queries: list[Query], size: int
) -> None:
    reference = recommender.rank_batch(queries, 20)  # every client in one batch
    for start in range(0, len(queries), size):
        batch = recommender.rank_batch(queries[start : start + size], 20)
        rows = slice(start, start + len(batch.candidates))
        assert torch.equal(batch.scores, reference.scores[rows]), f"batch of {size} at row {start}"
        assert torch.equal(batch.label_ids, reference.label_ids[rows]), f"batch of {size} at row {start}"


def test_a_lone_explanation_equals_the_same_client_explained_in_a_batch(
    recommender: Recommender, queries: list[Query]
) -> None:
    some = queries[:6]
    rankings = [recommender.ranked(top, 10) for top in recommender.top(some)]
    together = explain_rankings(recommender, some, rankings, today=TODAY)
    for query, ranking, expected in zip(some, rankings, together, strict=True):
        assert explain_rankings(recommender, [query], [ranking], today=TODAY)[0] == expected
