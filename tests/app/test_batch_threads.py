"""`wdrec recommend`'s scheduling: even batches, and each scoring thread warmed once before the clock."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.batch import _even_batches, _in_order, _on_each_thread

CASES = [(1194, 128, 2), (0, 128, 2), (1, 128, 2), (3, 7, 2), (20, 7, 2), (256, 128, 2), (257, 128, 2)]


@pytest.mark.parametrize(("rows", "most", "threads"), [*CASES, (10, 3, 4)])
def test_even_batches_keep_every_row_in_order_within_the_size(rows: int, most: int, threads: int) -> None:
    batches = _even_batches(range(rows), most, threads)
    sizes = [len(batch) for batch in batches]
    assert [row for batch in batches for row in batch] == list(range(rows))
    assert all(1 <= size <= most for size in sizes)
    assert not sizes or max(sizes) - min(sizes) <= 1
    # As many batches as a multiple of the threads, so that they finish together (unless rows are fewer).
    assert len(batches) % threads == 0 or len(batches) == rows


def test_warm_up_runs_once_on_each_thread_of_the_pool() -> None:
    seen: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        with lock:
            seen.append(threading.current_thread().name)

    with ThreadPoolExecutor(3) as pool:
        _on_each_thread(pool, 3, work)
    assert len(seen) == 3 and len(set(seen)) == 3


def test_results_come_in_order_and_a_failure_cancels_what_was_not_started() -> None:
    started: list[int] = []

    def work(batch: Sequence[int]) -> int:
        started.append(batch[0])
        if batch[0] == 2:
            raise ValueError("batch 2")
        return batch[0]

    batches = [range(i, i + 1) for i in range(50)]
    with ThreadPoolExecutor(1) as pool:
        results = _in_order(pool, work, batches, ahead=3)
        assert [next(results), next(results)] == [0, 1]
        with pytest.raises(ValueError, match="batch 2"):
            next(results)
        results.close()
    assert len(started) < 10  # at most `ahead` batches were ever queued past the one that failed
