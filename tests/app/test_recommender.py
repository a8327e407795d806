from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from app.errors import InvalidQueryError, UnknownClientError, UnknownLabelsError
from app.filters import Filters
from app.lru import LruCache
from app.recommender import Recommender
from training.artifacts import ArtifactSet

pytestmark = pytest.mark.slow  # needs the session's trained artifacts


@pytest.fixture(scope="module")
def recommender(artifacts: ArtifactSet) -> Recommender:
    return Recommender(artifacts)


def test_recommend_known_client_returns_k_labels_best_first(
    recommender: Recommender, known_client: int
) -> None:
    items = recommender.recommend(known_client, 7)
    assert [item.rank for item in items] == list(range(1, 8))
    scores = [item.score for item in items]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 < s < 1.0 for s in scores)


def test_recommend_marks_labels_from_the_clients_sessions(
    recommender: Recommender, known_client: int
) -> None:
    bought = {label for session in recommender.client(known_client).sessions for label in session.labels}
    items = recommender.recommend(known_client, recommender.max_k)
    assert {item.label_id for item in items if item.bought_before} == bought & {
        item.label_id for item in items
    }
    assert any(item.bought_before for item in items) and not all(item.bought_before for item in items)


def test_recommend_equals_top_k_of_score_histories(recommender: Recommender, known_client: int) -> None:
    profile = recommender.client(known_client)
    gender, age = recommender.vocab.genders.index(profile.gender), recommender.vocab.ages.index(profile.age)
    scores = recommender.score_histories([[s.labels for s in profile.sessions]], [gender], [age])[0]
    values, indices = torch.topk(scores, 5)
    items = recommender.recommend(known_client, 5)
    assert [item.label_id for item in items] == indices.tolist()
    assert [item.score for item in items] == pytest.approx(values.tolist())


def test_score_histories_batch_rows_equal_single_rows(recommender: Recommender) -> None:
    histories = [
        [s.labels for s in recommender.client(cid).sessions]
        for cid, _ in recommender.clients(limit=4, offset=0)
    ]
    batch = recommender.score_histories(histories, [1, 2, 0, 1], [3, 0, 5, 8])
    assert batch.shape == (4, recommender.vocab.n_labels)
    for row, history in enumerate(histories):
        single = recommender.score_histories([history], [[1, 2, 0, 1][row]], [[3, 0, 5, 8][row]])[0]
        torch.testing.assert_close(batch[row], single)


def test_recommend_concurrent_calls_equal_sequential_ones(recommender: Recommender) -> None:
    ids = [cid for cid, _ in recommender.clients(limit=8, offset=0)] * 4
    expected = {cid: recommender.recommend(cid, 10) for cid in ids}
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda cid: (cid, recommender.recommend(cid, 10)), ids))
    assert all(items == expected[cid] for cid, items in results)


def test_recommend_unknown_client_raises(recommender: Recommender) -> None:
    with pytest.raises(UnknownClientError, match="Client -5 not found"):
        recommender.recommend(-5, 10)


def test_label_ids_unknown_labels_raise_with_closest_known(recommender: Recommender) -> None:
    real = recommender.vocab.labels[3]
    with pytest.raises(UnknownLabelsError) as caught:
        recommender.label_ids([real, real[:-1], "없는 라벨"])
    assert caught.value.details["unknown"] == [real[:-1], "없는 라벨"]
    assert real in caught.value.details["suggestions"][real[:-1]]
    assert len(caught.value.details["suggestions"]["없는 라벨"]) == 3


def test_score_demographics_only_gives_a_cold_start_ranking(recommender: Recommender) -> None:
    items = recommender.rank(recommender.custom_query(gender="F", age=30, k=5))
    assert len(items) == 5
    assert not any(item.bought_before for item in items)
    assert items != recommender.rank(recommender.custom_query(gender="M", age=60, k=5))


def test_score_nothing_usable_raises(recommender: Recommender) -> None:
    with pytest.raises(InvalidQueryError, match="Nothing to score"):
        recommender.rank(recommender.custom_query(basket=[], history=[[], []]))


@pytest.mark.parametrize("k", [0, -1, 101])
def test_score_k_out_of_range_raises(recommender: Recommender, k: int) -> None:
    with pytest.raises(InvalidQueryError, match="k must be between 1 and 100"):
        recommender.rank(recommender.custom_query(gender="F", k=k))


def test_max_k_is_bounded_by_the_label_count(artifacts: ArtifactSet) -> None:
    assert Recommender(artifacts, max_k=10**6).max_k == artifacts.vocab.n_labels


def test_score_unknown_age_raises(recommender: Recommender) -> None:
    with pytest.raises(InvalidQueryError, match="Unknown age 35"):
        recommender.rank(recommender.custom_query(age=35))


def test_lru_cache_evicts_the_least_recently_used_and_size_0_keeps_nothing() -> None:
    entry = (torch.zeros(1), torch.zeros(1, dtype=torch.int64), frozenset[int]())
    cache: LruCache[int, object] = LruCache(2)
    cache.put(1, entry)
    cache.put(2, entry)
    cache.get(1)
    cache.put(3, entry)
    assert [cache.get(row) is not None for row in (1, 2, 3)] == [True, False, True]
    empty: LruCache[int, object] = LruCache(0)
    empty.put(1, entry)
    assert empty.get(1) is None


def test_label_ids_many_unknown_labels_are_all_listed_suggestions_for_the_first_ten(
    recommender: Recommender,
) -> None:
    names = [f"없는 라벨 {i}" for i in range(12)]
    with pytest.raises(UnknownLabelsError) as caught:
        recommender.label_ids(names)
    suggestions = caught.value.details["suggestions"]
    assert caught.value.details["unknown"] == names
    assert [len(suggestions[name]) for name in names] == [3] * 10 + [0, 0]


def test_recommend_with_a_filter_is_the_unfiltered_ranking_without_its_labels(
    artifacts: ArtifactSet, known_client: int
) -> None:
    recommender = Recommender(artifacts)
    items = recommender.recommend(known_client, 5, Filters(exclude_bought=True))
    assert not any(item.bought_before for item in items)
    unfiltered = recommender.recommend(known_client, recommender.max_k)
    assert [i.label_id for i in items] == [i.label_id for i in unfiltered if not i.bought_before][:5]
