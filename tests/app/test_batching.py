from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Collection, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import torch
from sqlalchemy.engine import URL

from app.batching import BatchScorer, ClientRanking, score_batch
from app.db.engine import open_database
from app.errors import InvalidQueryError, UnknownClientError, UnknownLabelsError
from app.filters import NO_FILTERS
from app.live import LiveClient
from app.recommender import Query, Recommender, TopK
from app.store import NewSession, SessionStore
from training.artifacts import ArtifactSet

pytestmark = pytest.mark.slow  # needs the session's trained artifacts


class RecordingRecommender(Recommender):
    """A real Recommender that records the size of every batch it scores."""

    def __init__(self, artifacts: ArtifactSet) -> None:
        super().__init__(artifacts)
        self.batch_sizes: list[int] = []

    def top(self, queries: Sequence[Query]) -> list[TopK]:
        self.batch_sizes.append(len(queries))
        return super().top(queries)


def _custom(recommender: Recommender, i: int) -> partial[Query]:
    labels = recommender.vocab.labels
    return partial(recommender.custom_query, basket=[labels[i], labels[i + 1]], gender="F", age=30, k=5)


def _assert_same(got: TopK, want: TopK) -> None:
    assert got.label_ids == want.label_ids
    torch.testing.assert_close(torch.tensor(got.scores), torch.tensor(want.scores))
    assert got.bought == want.bought


def test_score_batch_keeps_each_requests_error_and_scores_the_rest(artifacts: ArtifactSet) -> None:
    recommender = RecordingRecommender(artifacts)
    makers = [
        _custom(recommender, 1),
        partial(recommender.custom_query, basket=["없는 라벨"]),
        partial(recommender.client_query, -1),
        partial(recommender.custom_query, gender="F", k=0),
        _custom(recommender, 3),
    ]
    outcomes = score_batch(recommender, makers)
    assert [type(o) for o in outcomes[1:4]] == [UnknownLabelsError, UnknownClientError, InvalidQueryError]
    assert recommender.batch_sizes == [2]  # both valid queries in one forward pass
    for outcome, make in zip((outcomes[0], outcomes[4]), (makers[0], makers[4]), strict=True):
        assert not isinstance(outcome, Exception)
        _assert_same(outcome, recommender.top([make()])[0])


def test_score_batch_of_only_bad_requests_runs_no_forward_pass(artifacts: ArtifactSet) -> None:
    recommender = RecordingRecommender(artifacts)
    outcomes = score_batch(recommender, [partial(recommender.client_query, -1)])
    assert isinstance(outcomes[0], UnknownClientError) and recommender.batch_sizes == []


def test_batch_scorer_concurrent_requests_share_forward_passes_and_equal_single_ones(
    artifacts: ArtifactSet,
) -> None:
    recommender = RecordingRecommender(artifacts)
    makers = [_custom(recommender, i) for i in range(1, 41)]
    scorer = BatchScorer(threads=2, max_batch=16)

    async def run() -> list[TopK]:
        return await asyncio.gather(*(scorer.top(recommender, make) for make in makers))

    results = asyncio.run(run())
    assert sum(recommender.batch_sizes) == 40
    assert len(recommender.batch_sizes) < 40 and max(recommender.batch_sizes) <= 16
    for result, make in zip(results, makers, strict=True):
        _assert_same(result, recommender.top([make()])[0])


def test_batch_scorer_raises_a_requests_error_to_that_request_only(artifacts: ArtifactSet) -> None:
    recommender = Recommender(artifacts)
    scorer = BatchScorer(threads=1, max_batch=8)

    async def run() -> list[TopK | BaseException]:
        requests = [_custom(recommender, 1), partial(recommender.client_query, -7), _custom(recommender, 2)]
        return await asyncio.gather(*(scorer.top(recommender, r) for r in requests), return_exceptions=True)

    first, error, third = asyncio.run(run())
    assert isinstance(error, UnknownClientError)
    assert not isinstance(first, BaseException) and not isinstance(third, BaseException)


def test_batch_scorer_never_mixes_two_recommenders_in_one_batch(artifacts: ArtifactSet) -> None:
    old, new = RecordingRecommender(artifacts), RecordingRecommender(artifacts)
    scorer = BatchScorer(threads=1, max_batch=64)

    async def run() -> None:
        await asyncio.gather(
            *(scorer.top(r, _custom(r, i)) for i in range(1, 11) for r in (old, new)),
        )

    asyncio.run(run())
    assert sum(old.batch_sizes) == sum(new.batch_sizes) == 10


def test_batch_scorer_a_cancelled_request_does_not_disturb_the_others(artifacts: ArtifactSet) -> None:
    recommender = Recommender(artifacts)
    scorer = BatchScorer(threads=1, max_batch=8)

    async def run() -> TopK:
        doomed = asyncio.ensure_future(scorer.top(recommender, _custom(recommender, 1)))
        survivor = asyncio.ensure_future(scorer.top(recommender, _custom(recommender, 2)))
        await asyncio.sleep(0)
        doomed.cancel()
        return await survivor

    _assert_same(asyncio.run(run()), recommender.top([_custom(recommender, 2)()])[0])


def test_batch_scorer_a_request_right_after_the_last_batch_is_still_scored(artifacts: ArtifactSet) -> None:
    # The woken request runs before its finished scorer task is forgotten: it must not count as busy.
    recommender = Recommender(artifacts)
    scorer = BatchScorer(threads=1, max_batch=8)

    async def run() -> TopK:
        await scorer.top(recommender, _custom(recommender, 1))
        async with asyncio.timeout(30):  # awaited in this task: it runs before the scorer task is forgotten
            return await scorer.top(recommender, _custom(recommender, 2))

    _assert_same(asyncio.run(run()), recommender.top([_custom(recommender, 2)()])[0])


class CountingStore(SessionStore):
    """A real SQLite store that counts its batched reads."""

    reads: list[int]

    def clients(self, client_ids: Collection[int], **kwargs: Any) -> dict[int, LiveClient]:
        self.reads.append(len(set(client_ids)))
        return super().clients(client_ids, **kwargs)


def test_batch_scorer_reads_a_batchs_clients_at_once_and_ranks_as_one_at_a_time(
    artifacts: ArtifactSet, tmp_path: Path
) -> None:
    recommender = RecordingRecommender(artifacts)
    store = CountingStore(open_database(URL.create("sqlite", database=str(tmp_path / "wdrec.sqlite3"))))
    store.reads = []
    known = artifacts.clients["CLNT_ID"].to_list()[:6]
    labels = tuple(recommender.vocab.labels[:2])
    today = dt.date(2026, 12, 1)
    # More sessions than the model sees, one after `today`: a ranking reads only the newest it can use.
    for day in range(recommender.max_sessions + 3):
        date = today - dt.timedelta(days=day % 5 - 1)  # several per date, 2026-12-02 .. 2026-11-28
        store.record_session(known[0], NewSession(f"s{day}", date, labels[day % 2 :], None))
    store.record_session(-5, NewSession("s", dt.date(2026, 11, 30), labels, None))  # unknown to training
    scorer = BatchScorer(threads=1, max_batch=16)
    wanted = [*known, -5, -6]

    async def run() -> list[ClientRanking | BaseException]:
        jobs = (scorer.client(recommender, store, client_id, NO_FILTERS, today) for client_id in wanted)
        return await asyncio.gather(*jobs, return_exceptions=True)

    *rankings, missing = asyncio.run(run())
    assert isinstance(missing, UnknownClientError)
    assert sum(store.reads) == len(wanted) and len(store.reads) == len(recommender.batch_sizes) < len(wanted)
    for client_id, ranking in zip(wanted, rankings, strict=False):
        assert isinstance(ranking, ClientRanking)
        live = store.client(client_id)  # everything recorded
        assert (ranking.live is not None) == (live is not None) == (client_id in (known[0], -5))
        if live is not None and ranking.live is not None:
            seen = tuple(s for s in live.sessions if s.date <= today)[-recommender.max_sessions :]
            assert ranking.live.sessions == seen and ranking.live.revision == live.revision
        expected = recommender.client_query(client_id, NO_FILTERS, live, today)
        _assert_same(ranking.top, recommender.top([expected])[0])
    store.close()
