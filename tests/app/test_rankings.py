"""Rankings computed off the request path and stored: the same answers as computed ones, never stale.

Two apps share one database (SQLite and PostgreSQL): one answers from stored rankings, the other (stored
rankings and its cache off) computes every answer; their bodies must be equal byte for byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app import rankings
from app.core.config import Settings
from app.errors import StoreUnavailableError
from app.live import ClientState, StoredRanking
from app.main import create_app
from app.metrics import STORED_HIT, STORED_MISS, STORED_WAITED
from app.rankings import RankingRefresher
from app.recommender import labels_in
from app.served import ServedVersion
from app.store import NewSession, SessionStore, open_store
from tests.app.api.routes.test_clients import KEY, NEW_CLIENT, TODAY, post_session, session_body, unbought
from training.artifacts import ArtifactSet

pytestmark = pytest.mark.slow  # needs the session's trained artifacts

QUERIES = [
    "k=10",
    "k=1",
    "k=100",
    "k=10&exclude_bought=true",
    "k=5&clac1={clac1}",
    "k=10&exclude={label}",
]


@pytest.fixture
def apps(tiny_artifacts: Path, database_url: str) -> Iterator[tuple[TestClient, TestClient]]:
    """(an app answering from stored rankings, an app computing every answer) over one database."""
    common = {"artifacts_dir": tiny_artifacts, "write_api_key": KEY, "database_url": database_url}
    stored = Settings(**common, recommend_cache_size=0)
    computed = Settings(**common, recommend_cache_size=0, stored_rankings=False)
    with TestClient(create_app(stored)) as with_stored, TestClient(create_app(computed)) as without:
        yield with_stored, without


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def stored_now(app: TestClient, client_ids: list[int]) -> bool:
    """Whether the app's database holds a current ranking of each client for its version and today."""
    state = app.app.state  # type: ignore[attr-defined]
    states = state.store.states(client_ids, version=state.served.version, as_of=TODAY)
    return all(states[client_id].ranking is not None for client_id in client_ids)


def queries(artifacts: ArtifactSet) -> list[str]:
    vocab = artifacts.vocab
    return [q.format(clac1=vocab.clac1[vocab.label_clac1[3]], label=vocab.labels[3]) for q in QUERIES]


def test_stored_rankings_answer_as_computed_ones_for_every_query(
    apps: tuple[TestClient, TestClient], artifacts: ArtifactSet
) -> None:
    with_stored, without = apps
    client_ids = [int(c) for c in artifacts.clients["CLNT_ID"].to_list()[:8]]
    wait_until(lambda: stored_now(with_stored, client_ids))  # every client's, refreshed at start-up
    hits = STORED_HIT._value.get()
    for client_id in client_ids:
        for query in queries(artifacts):
            url = f"/recommend/{client_id}?{query}"
            answer = with_stored.get(url)
            assert answer.status_code == 200, answer.text
            assert answer.content == without.get(url).content, url
    assert STORED_HIT._value.get() - hits == len(client_ids) * len(QUERIES)  # none was computed


def stored_then_written(
    with_stored: TestClient, writer: TestClient, artifacts: ArtifactSet, client_id: int
) -> tuple[str, bytes]:
    """Once the client's ranking is stored, its answer, then a session written through `writer`: (the URL
    read, the answer before the write)."""
    wait_until(lambda: stored_now(with_stored, [client_id]))
    url = f"/recommend/{client_id}?k=10"
    before = with_stored.get(url).content
    written = post_session(writer, client_id, session_body(unbought(artifacts, client_id)))
    assert written.status_code == 201
    return url, before


def test_a_write_is_seen_by_the_next_read_then_its_refreshed_ranking_is_stored(
    apps: tuple[TestClient, TestClient], artifacts: ArtifactSet, known_client: int
) -> None:
    with_stored, without = apps
    url, before = stored_then_written(with_stored, with_stored, artifacts, known_client)
    after = with_stored.get(url).content  # refreshed already or not: never the stale ranking
    assert after == without.get(url).content != before
    wait_until(lambda: stored_now(with_stored, [known_client]))  # the write's refresh
    hits = STORED_HIT._value.get()
    assert with_stored.get(url).content == after
    assert STORED_HIT._value.get() == hits + 1


def test_a_write_through_another_app_is_seen_though_this_one_holds_a_stored_ranking(
    apps: tuple[TestClient, TestClient], artifacts: ArtifactSet, known_client: int
) -> None:
    with_stored, without = apps  # `without` stands for another replica, which refreshes nothing
    url, before = stored_then_written(with_stored, without, artifacts, known_client)
    assert not stored_now(with_stored, [known_client])  # nothing told this app of the write
    waited, misses = STORED_WAITED._value.get(), STORED_MISS._value.get()
    assert with_stored.get(url).content == without.get(url).content != before
    # Its stored ranking had the old revision: the read waited for the refresh it asked for, now stored.
    assert (STORED_WAITED._value.get(), STORED_MISS._value.get()) == (waited + 1, misses)
    assert stored_now(with_stored, [known_client])


def test_a_new_client_gets_a_stored_ranking_once_it_has_sessions(
    apps: tuple[TestClient, TestClient], artifacts: ArtifactSet
) -> None:
    with_stored, without = apps
    url = f"/recommend/{NEW_CLIENT}?k=10"
    assert with_stored.get(url).status_code == 404
    labels = artifacts.vocab.labels[:3]
    assert post_session(with_stored, NEW_CLIENT, session_body(list(labels))).status_code == 201
    wait_until(lambda: stored_now(with_stored, [NEW_CLIENT]))
    answer = with_stored.get(url)
    assert answer.status_code == 200 and answer.content == without.get(url).content


def test_products_and_explanations_are_computed_with_the_history(
    apps: tuple[TestClient, TestClient], known_client: int
) -> None:
    with_stored, without = apps
    wait_until(lambda: stored_now(with_stored, [known_client]))
    hits, misses = STORED_HIT._value.get(), STORED_MISS._value.get()
    for query in ("explain=true", "products=2"):
        url = f"/recommend/{known_client}?k=5&{query}"
        assert with_stored.get(url).content == without.get(url).content
    assert (STORED_HIT._value.get(), STORED_MISS._value.get()) == (hits, misses)


@pytest.fixture
def store(database_url: str) -> Iterator[SessionStore]:
    opened = open_store(Settings(database_url=database_url))
    yield opened
    opened.close()


def test_a_stored_ranking_is_current_only_for_its_version_date_and_revision(store: SessionStore) -> None:
    scores = np.array([0.25, 0.5, 0.125], dtype=np.float32)
    order = np.array([1, 0, 2])

    def ranking(*bought: int) -> StoredRanking:
        return StoredRanking(scores, order, np.array(bought, dtype=np.int64))

    store.record_session(7, NewSession("s1", TODAY, ("a",), None))  # client 7 at revision 1
    asyncio.run(store.put_rankings_async("v1", TODAY, [(7, 1, ranking(2)), (8, 0, ranking())]))
    states = store.states([7, 8, 9], version="v1", as_of=TODAY)
    assert states[7].revision == 1 and states[9] == (0, None)
    for client_id, bought in ((7, [2]), (8, [])):
        stored = states[client_id].ranking
        assert stored is not None and stored.bought.tolist() == bought and stored.order.tolist() == [1, 0, 2]
        assert stored.scores.tobytes() == scores.tobytes()  # bit for bit
    assert store.states([7], version="v2", as_of=TODAY)[7].ranking is None
    assert store.states([7], version="v1", as_of=TODAY - dt.timedelta(days=1))[7].ranking is None
    assert store.states([7])[7] == (1, None)  # no version: the revision only
    store.record_session(7, NewSession("s2", TODAY, ("b",), None))
    assert store.states([7], version="v1", as_of=TODAY)[7] == (2, None)  # a write made it stale
    asyncio.run(
        store.put_rankings_async(
            "v1", TODAY, [(7, 2, StoredRanking(scores[::-1], order[::-1], np.array([0])))]
        )
    )
    replaced = store.states([7], version="v1", as_of=TODAY)[7].ranking  # replaced the first
    assert replaced is not None and replaced.scores.tolist() == [0.125, 0.5, 0.25]
    assert replaced.order.tolist() == [2, 0, 1] and replaced.bought.tolist() == [0]


def test_label_ids_take_two_bytes_while_the_vocabulary_allows() -> None:
    assert StoredRanking.label_dtype(3) is np.uint16 and StoredRanking.label_dtype(1 << 16) is np.uint16
    assert StoredRanking.label_dtype((1 << 16) + 1) is np.int32


def as_values(state: ClientState | None) -> tuple[int, bytes, list[int], list[int]] | None:
    """A client state's revision and ranking (scores bit for bit), comparable with ==."""
    if state is None or state.ranking is None:
        return None
    ranking = state.ranking
    return state.revision, ranking.scores.tobytes(), ranking.order.tolist(), ranking.bought.tolist()


@pytest.fixture
def served(tiny_artifacts: Path) -> ServedVersion:
    return ServedVersion.load(Settings(artifacts_dir=tiny_artifacts))


def test_a_read_waiting_for_a_refresh_gets_its_clients_ranking_as_of_its_arrival(
    served: ServedVersion, store: SessionStore
) -> None:
    recommender = served.recommender
    client_id, other = recommender.client_id_at(0), recommender.client_id_at(1)
    label = recommender.vocab.labels[0]

    async def run() -> list[ClientState | None]:
        refresher = RankingRefresher(store, lambda: served)
        task = asyncio.create_task(refresher.run())
        await refresher.idle()  # the start-up sweep stored every client's ranking
        # Written through another replica: this refresher was not told, its stored ranking is stale.
        await asyncio.to_thread(store.record_session, client_id, NewSession("s1", TODAY, (label,), None))
        answers = [
            await refresher.current(client_id, served.version, TODAY, 1),
            await refresher.current(other, served.version, TODAY, 0),  # current already: as stored
            await refresher.current(NEW_CLIENT, served.version, TODAY, 0),  # unknown: computed, a 404
            await refresher.current(client_id, "another-version", TODAY, 1),
            await refresher.current(client_id, served.version, TODAY - dt.timedelta(days=1), 1),
        ]
        task.cancel()
        return answers

    written, current, unknown, *elsewhere = asyncio.run(asyncio.wait_for(run(), 60))
    live = store.clients([client_id], newest=recommender.max_sessions, until=TODAY)[client_id]
    query = recommender.client_query(client_id, live=live, today=TODAY)
    assert written is not None and written.revision == 1 and written.ranking is not None
    assert written.ranking.scores.tobytes() == recommender.scores([query]).numpy()[0].tobytes()
    assert written.ranking.bought.tolist() == sorted(labels_in(query.history))
    for got in (written, current):  # each as stored
        assert got is not None and got.ranking is not None
    stored = store.states([client_id, other], version=served.version, as_of=TODAY)
    assert as_values(stored[client_id]) == as_values(written) and as_values(stored[other]) == as_values(
        current
    )
    assert unknown is None and elsewhere == [None, None]


def test_a_read_finding_its_clients_ranking_being_stored_takes_it_without_a_pass(
    served: ServedVersion, store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pass does not wait for its rankings' commit; a read meanwhile at the revision computed takes the
    ranking the commit will store."""
    recommender = served.recommender
    client_id, label = recommender.client_id_at(0), recommender.vocab.labels[0]
    passes, putting = [], store.put_rankings_async
    counted = rankings.read_stale

    def read_stale(*args: Any) -> rankings.Stale:
        passes.append(args[2])
        return counted(*args)

    async def run() -> tuple[ClientState | None, ClientState | None, ClientState | None]:
        refresher = RankingRefresher(store, lambda: served)
        task = asyncio.create_task(refresher.run())
        await refresher.idle()
        storing, gate = asyncio.Event(), asyncio.Event()

        async def held(*args: Any) -> None:
            storing.set()
            await gate.wait()
            await putting(*args)

        monkeypatch.setattr(store, "put_rankings_async", held)
        monkeypatch.setattr(rankings, "read_stale", read_stale)
        await store.record_session_async(client_id, NewSession("s1", TODAY, (label,), None))
        refresher.changed(client_id)
        await storing.wait()  # the pass computed the client at revision 1; its commit is held
        assert passes == [[client_id]]
        during = await refresher.current(client_id, served.version, TODAY, 1)
        assert passes == [[client_id]]  # no pass: the ranking being stored
        earlier = await refresher.current(client_id, served.version, TODAY, 0)  # another revision: a pass
        assert passes == [[client_id], [client_id]]
        gate.set()
        await refresher.idle()
        task.cancel()
        return during, earlier, store.states([client_id], version=served.version, as_of=TODAY)[client_id]

    during, earlier, stored = asyncio.run(asyncio.wait_for(run(), 60))
    live = store.clients([client_id], newest=recommender.max_sessions, until=TODAY)[client_id]
    scores = recommender.scores([recommender.client_query(client_id, live=live, today=TODAY)])
    assert during is not None and during.ranking is not None and during.revision == 1
    assert during.ranking.scores.tobytes() == scores.numpy()[0].tobytes()
    assert as_values(stored) == as_values(during) == as_values(earlier)


def test_waiting_reads_are_let_go_when_a_refresh_fails_or_the_refresher_stops(
    served: ServedVersion, store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    client_id = served.recommender.client_id_at(0)
    release = threading.Event()
    working = rankings.read_stale

    def failing(*args: object) -> None:
        raise StoreUnavailableError

    def held(*args: object) -> None:
        release.wait(30)
        raise StoreUnavailableError

    async def run() -> tuple[ClientState | None, ClientState | None, ClientState | None]:
        refresher = RankingRefresher(store, lambda: served)
        task = asyncio.create_task(refresher.run())
        await refresher.idle()
        monkeypatch.setattr(rankings, "read_stale", failing)
        failed = await refresher.current(client_id, served.version, TODAY, 0)  # computed by the read then
        monkeypatch.setattr(rankings, "read_stale", held)
        waiting = asyncio.create_task(refresher.current(client_id, served.version, TODAY, 0))
        await asyncio.sleep(0.1)  # its pass has started
        task.cancel()
        release.set()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        monkeypatch.setattr(rankings, "read_stale", working)
        after = await refresher.current(client_id, served.version, TODAY, 0)  # stopped: no pass, None
        return failed, await waiting, after

    assert asyncio.run(asyncio.wait_for(run(), 60)) == (None, None, None)


def test_a_sweep_lets_the_loops_requests_run_between_its_passes(
    served: ServedVersion, store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pass's SQLite read and its computation do not suspend: without a yield, a sweep of every client
    would hold the event loop from its first pass to its last."""
    passes: list[list[int]] = []
    counted = rankings.read_stale

    def read_stale(*args: Any) -> rankings.Stale:
        passes.append(args[2])
        return counted(*args)

    monkeypatch.setattr(rankings, "read_stale", read_stale)
    monkeypatch.setattr(rankings, "CHUNK", 1)

    async def run() -> list[int]:
        seen: list[int] = []

        async def request() -> None:  # the loop's other work, as often as it gets the loop
            while True:
                seen.append(len(passes))
                await asyncio.sleep(0)

        other = asyncio.create_task(request())
        refresher = RankingRefresher(store, lambda: served)
        task = asyncio.create_task(refresher.run())
        await refresher.idle()
        task.cancel()
        other.cancel()
        return seen

    seen = asyncio.run(asyncio.wait_for(run(), 60))
    assert len(passes) == served.recommender.n_clients > 2
    assert set(range(1, len(passes))) <= set(seen)  # the other work ran between every two passes


def test_a_new_day_refreshes_every_clients_ranking(
    served: ServedVersion, store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    recommender = served.recommender
    client_ids = [recommender.client_id_at(row) for row in range(recommender.n_clients)]
    day = [TODAY - dt.timedelta(days=1)]
    monkeypatch.setattr(rankings, "utc_today", lambda: day[0])

    async def run() -> None:
        refresher = RankingRefresher(store, lambda: served)
        task = asyncio.create_task(refresher.run())
        for today in (day[0], TODAY):
            day[0] = today
            refresher.wake()
            while not all(
                state.ranking is not None
                for state in store.states(client_ids, version=served.version, as_of=today).values()
            ):
                await asyncio.sleep(0.02)
        task.cancel()

    asyncio.run(asyncio.wait_for(run(), 60))
    query = recommender.client_query(client_ids[0], today=TODAY)
    stored = store.states([client_ids[0]], version=served.version, as_of=TODAY)[client_ids[0]].ranking
    assert stored is not None
    assert stored.scores.tobytes() == recommender.scores([query]).numpy()[0].tobytes()
    assert stored.order[:10].tolist() == recommender.top([query])[0].label_ids[:10]
