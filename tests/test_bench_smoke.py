"""The benchmarks that call the product's model code in process, run at a tiny size: a change of the model's
inputs or of the recommender must reach them (bench.neighbours once called the graph without its calendar
input and crashed). The benchmarks that drive a server go through the HTTP API and its tests."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from app.core.config import Settings
from app.recommender import Recommender
from app.store import open_store
from bench import batch, explain, instructions, neighbours


@pytest.fixture
def torch_threads() -> Iterator[None]:
    """Give back the thread count a benchmark sets for itself."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("torch_threads")
def test_the_neighbour_benchmark_runs_the_exported_graph() -> None:
    result = neighbours.run([40], 30)
    capped, uncapped = result["rows"]
    assert (capped["model"], uncapped["model"]) == ("capped (product)", "uncapped (reference)")
    assert capped["pool_rows"] == uncapped["pool_rows"] == 40  # fewer clients than the cap: both hold all
    assert capped["request_ms"] > 0 and capped["request_vs_1st_capped"] == 1.0
    assert "| 40 | capped (product) | 40 |" in neighbours.markdown(result)


def test_the_explanation_benchmark_ranks_and_explains_in_process(tiny_artifacts: Path) -> None:
    recommender = Recommender.load(tiny_artifacts / "current")
    result = explain.in_process(recommender, rows=[0, 1, 2], rounds=1)
    assert result["plain"]["median_ms"] > 0 and result["explained"]["median_ms"] > 0


@pytest.mark.usefixtures("torch_threads")
def test_the_batch_benchmark_splits_a_batch_cost(tiny_artifacts: Path) -> None:
    result = batch.cost_per_client(tiny_artifacts / "current", rounds=1)
    assert result["features_ms_per_client"] > 0 and result["forward_ms_per_client"] > 0
    assert result["model_version"] == (tiny_artifacts / "current").resolve().name


def _recorded_sessions(artifacts: Path, state: Path) -> int:
    store = open_store(Settings(artifacts_dir=artifacts, state_dir=state))
    try:
        return sum(len(client.sessions) for client in store.all_clients())
    finally:
        store.close()


@pytest.mark.usefixtures("torch_threads")
def test_the_instruction_benchmark_makes_each_scenarios_requests(
    tiny_artifacts: Path, tmp_path: Path
) -> None:
    """What callgrind counts (valgrind itself is not needed here): each scenario's requests through the app,
    every answer checked (a non-2xx one raises), on the state the scenario is set up with."""
    live = tmp_path / "live-read"
    live.mkdir()
    instructions.prepare_state(tiny_artifacts, live)
    clients = min(instructions.CLIENTS, Recommender.load(tiny_artifacts / "current").n_clients)
    assert _recorded_sessions(tiny_artifacts, live) == clients * instructions.RECORDED
    for scenario in instructions.SCENARIOS:
        state = tmp_path / scenario
        state.mkdir(exist_ok=True)
        instructions.child(scenario, 20, tiny_artifacts, state)
    assert _recorded_sessions(tiny_artifacts, tmp_path / "write") == 20
    # the reads changed nothing
    assert _recorded_sessions(tiny_artifacts, live) == clients * instructions.RECORDED
    row = {"scenario": "write", "requests": 800, "instructions": [10, 810], "per_request": 1.0e6}
    result = {"commit": "abc", "model": "v", "requests": 800, "rows": [row]}
    what = "POST /clients/{id}/sessions, a new session each, and the refresh of its stored ranking"
    row_text = f"| write | {what} | 1.000 |"
    assert row_text in instructions.markdown(result)
