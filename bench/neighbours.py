"""Benchmark: a request's cost and the artifact's size as the number of clients grows (the neighbour pool).

    .venv/bin/python -m bench.neighbours [--clients 1000 10000 100000] [--labels 2000]

TIFU-KNN's neighbour feature searches a pool of clients' vectors inside the graph. The product caps that
pool (`start.neighbour_pool`, a seeded sample), so a request's cost and model.pt's size stop growing with
the client count. For each client count this builds the model `wdrec train` would export when it starts at
TIFU-KNN (the product's `Pool.of`, `build_model` and TorchScript export; the baseline's hyperparameters set
to The Complete Journey's, since tuning them is not what is measured) over synthetic histories, then times
single-client requests through the exported graph. The reference, measured in the same run, is the same
model without a pool cap (the design before the cap), where it fits in memory. Writes
results/neighbours.json and .md.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench import write_results
from training.artifacts import script_model
from training.baselines import Pool, TifuKNN
from training.config import TrainConfig
from training.dataset import Vocabulary
from training.features import NO_DATE, ClientRecord, FeatureSchema, ModelInputs
from training.train import build_model

SESSIONS = 10  # per client, as the lpoint profile keeps
REQUESTS = 300  # timed single-client forward passes per setting
TIFU_PARAMS = {"group_size": 3, "within": 1.0, "across": 0.9, "k": 100, "alpha": 0.3}  # cap10's choice
UNCAPPED_UP_TO = 20_000  # the reference model holds every client's vector: [M, N] floats


def synthetic_records(n_clients: int, n_labels: int, seed: int = 0) -> list[ClientRecord]:
    """Clients of SESSIONS baskets of 2-12 labels from a popularity-skewed catalogue."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, n_labels + 1)
    weights /= weights.sum()

    def basket() -> list[int]:
        return sorted(set(rng.choice(n_labels, size=int(rng.integers(2, 13)), p=weights).tolist()))

    return [ClientRecord(c, 1, 3, [basket() for _ in range(SESSIONS)]) for c in range(n_clients)]


def exported_model(records: Sequence[ClientRecord], n_labels: int, pool_cap: int, folder: Path) -> Path:
    """model.pt of a model started at TIFU-KNN with a neighbour pool of at most `pool_cap` clients."""
    config = TrainConfig.model_validate({"start": {"neighbour_pool": pool_cap}, "ablations": False})
    vocab = Vocabulary(labels=[f"l{i}" for i in range(n_labels)], label_clac1=[0] * n_labels, clac1=["c"])
    schema = FeatureSchema(SESSIONS, 32, 8, n_labels, 1, 3, 9, 5, 0)
    pool = Pool.of(records, max_neighbours=pool_cap, seed=config.seed)
    baseline = TifuKNN(n_labels)
    baseline.params = dict(TIFU_PARAMS)
    baseline.popularity = np.ones(n_labels)
    hist = torch.full((len(pool.neighbour_rows), SESSIONS, 32), -1, dtype=torch.int64)
    for row, i in enumerate(pool.neighbour_rows):
        for j, basket in enumerate(records[i].sessions[:-2]):
            hist[row, j + 2, : len(basket)] = torch.tensor(basket[:32])
    model = build_model(schema, vocab, config, targets=[[0]], start_from=baseline, pool_hist=hist)
    path = folder / f"model-{len(records)}-{pool_cap}.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        script_model(model.eval()).save(str(path))
    return path


def request_ms(path: Path, records: Sequence[ClientRecord]) -> float:
    """Median milliseconds of one client's forward pass through the exported graph (1 torch thread)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = torch.jit.load(str(path))
    rng = np.random.default_rng(1)
    times = []
    with torch.inference_mode():
        for c in rng.choice(len(records), size=REQUESTS):
            hist = torch.full((1, SESSIONS, 32), -1, dtype=torch.int64)
            for j, basket in enumerate(records[int(c)].sessions):
                hist[0, j, : len(basket)] = torch.tensor(basket[:32])
            inputs = ModelInputs(  # by name: a new model input fails here, not inside the graph
                hist=hist,
                ago=torch.full((1, SESSIONS), NO_DATE),
                gender=torch.tensor([1]),
                age=torch.tensor([3]),
                doc_vec=torch.zeros(1, 8),
            )
            started = time.perf_counter()
            model(*inputs)
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times[20:])  # the first passes warm the graph's executor


def run(client_counts: Sequence[int], n_labels: int) -> dict[str, Any]:
    torch.set_num_threads(1)
    cap = TrainConfig().start.neighbour_pool
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for m in client_counts:
            records = synthetic_records(m, n_labels)
            caps = {"capped (product)": cap} | ({"uncapped (reference)": m} if m <= UNCAPPED_UP_TO else {})
            for name, pool_cap in caps.items():
                path = exported_model(records, n_labels, pool_cap, Path(tmp))
                rows.append({"clients": m, "model": name, "pool_rows": min(m, pool_cap),
                             "model_pt_mb": round(path.stat().st_size / 2**20, 1),
                             "request_ms": round(request_ms(path, records), 3)})  # fmt: skip
                path.unlink()
                print(rows[-1], flush=True)
    first = next(r for r in rows if r["model"] == "capped (product)")
    for row in rows:
        row["request_vs_1st_capped"] = round(row["request_ms"] / first["request_ms"], 2)
        row["size_vs_1st_capped"] = round(row["model_pt_mb"] / first["model_pt_mb"], 2)
    return {"labels": n_labels, "neighbour_pool_cap": cap, "requests": REQUESTS, "rows": rows}


def markdown(result: dict[str, Any]) -> str:
    head = (
        "| clients | model | pool rows | model.pt MB | request ms (median) | request vs first | size vs first"
    )
    lines = [
        "# A request's cost and the artifact's size against the number of clients",
        "",
        f"`.venv/bin/python -m bench.neighbours`: a model started at TIFU-KNN over {result['labels']} "
        f"labels, {SESSIONS} sessions per client; single-client forward passes through the exported "
        f"TorchScript graph (1 thread, median of {result['requests']}). The product caps the neighbour "
        f"pool at {result['neighbour_pool_cap']} clients (`start.neighbour_pool`); the reference holds "
        "every client.",
        "",
        head + " |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['clients']:,} | {r['model']} | {r['pool_rows']:,} | {r['model_pt_mb']} | {r['request_ms']} | "
        f"{r['request_vs_1st_capped']} | {r['size_vs_1st_capped']} |"
        for r in result["rows"]
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--labels", type=int, default=2_000)
    args = parser.parse_args()
    result = run(args.clients, args.labels)
    write_results("neighbours", result, markdown(result))


if __name__ == "__main__":
    main()
