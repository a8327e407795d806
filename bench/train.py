"""Benchmark `wdrec train`: time and peak RSS of each pipeline step, training throughput, the metric table.

    .venv/bin/python -m bench.train [--preset default|lpoint] [--clients N] [--set KEY=VALUE ...]

Generates the data set into a temporary folder, runs the real pipeline (both ablations included) and reads
the per-step figures the pipeline records in metadata.json. Throughput is reported as examples/s (training
examples x epochs run / wall time of the training step, validation passes included) and as a ratio to the
deep-only model measured in the same run (the plain-MLP reference). Writes results/train.json and .md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import write_results
from training.evaluate import report_text
from training.generate import generate
from training.pipeline import run_training


def run(preset: str, clients: int, overrides: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        data, artifacts = Path(tmp) / "data", Path(tmp) / "artifacts"
        started = time.perf_counter()
        generate(data, clients=clients, preset=preset)
        generated = time.perf_counter() - started
        started = time.perf_counter()
        version = run_training(data, artifacts, overrides=overrides)
        total = time.perf_counter() - started
        metadata = json.loads((version / "metadata.json").read_text())
    models = metadata["training"]["models"]
    reference = models.get("deep-only", {}).get("examples_per_s") or 1.0
    return {
        "preset": preset,
        "clients_generated": clients if preset == "default" else "preset",
        "cpu_count": os.cpu_count(),
        "torch_threads": metadata["config"]["threads"] or os.cpu_count(),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "generate_seconds": round(generated, 2),
        "train_command_seconds": round(total, 2),
        "process_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "steps": metadata["timings"],
        "models": {
            name: {**m, "throughput_vs_deep_only": round(m["examples_per_s"] / reference, 3)}
            for name, m in models.items()
        },
        "examples": metadata["training"]["examples"],
        "n_clients": metadata["n_clients"],
        "n_labels": metadata["n_labels"],
        "metrics": metadata["metrics"],
        "card": metadata["card"],
    }


def markdown(result: dict[str, Any]) -> str:
    steps = "\n".join(
        f"| {name} | {s['seconds']:.1f} | {s['peak_rss_mb']:.0f} |" for name, s in result["steps"].items()
    )
    models = "\n".join(
        f"| {name} | {m['epochs']} ({m['best_epoch']}) | {m['seconds']:.1f} | {m['examples_per_s']:.0f} | "
        f"{m['throughput_vs_deep_only']:.2f} |"
        for name, m in result["models"].items()
    )
    return (
        f"# wdrec train benchmark ({result['preset']} preset)\n\n"
        f"{result['n_clients']} clients, {result['n_labels']} labels, examples {result['examples']}; "
        f"{result['cpu_count']} CPUs, {result['torch_threads']} torch threads, 1-min load average at the end "
        f"{result['load_average_1min_at_end']}.\n\n"
        f"`wdrec train` (preprocess to export, both ablations): **{result['train_command_seconds']:.1f} s**, "
        f"process peak RSS {result['process_peak_rss_mb']:.0f} MB "
        f"(data generation {result['generate_seconds']:.1f} s, not included).\n\n"
        "| step | seconds | peak RSS MB |\n|---|---|---|\n" + steps + "\n\n"
        "| model | epochs (best) | seconds | examples/s | vs deep-only |\n|---|---|---|---|---|\n"
        + models
        + "\n\n"
        + report_text(result["metrics"], result["card"])
        + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--preset", choices=["default", "lpoint"], default="default")
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument(
        "--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="training config override"
    )
    parser.add_argument("--name", default="train", help="results/<name>.json and .md (default train)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result = run(args.preset, args.clients, args.set)
    write_results(args.name, result, markdown(result))


if __name__ == "__main__":
    main()
