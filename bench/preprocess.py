"""Benchmark: load + validate + preprocess the `lpoint` preset against polars' bare read of the same CSVs.

    .venv/bin/python -m bench.preprocess [--data data/lpoint] [--repeats 2]

Generates the preset into --data unless the four files are already there. Each measurement runs in its own
subprocess, so its peak RSS (getrusage ru_maxrss) is its own; the runs alternate (bare, preprocess, bare, ...)
and the fastest of each is kept, so load from other processes on the machine hits both alike.
Targets (2 cores): load + preprocess <= 2x the bare read, peak RSS <= 4 GB.
Writes results/preprocess.json and results/preprocess.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl

from bench import write_results
from training.generate import generate
from training.preprocess import load_and_preprocess

FILES = ("Product.csv", "Session.csv", "Custom.csv", "Master.csv")
TARGET_RATIO = 2.0
TARGET_RSS_GB = 4.0


def measure(kind: str, data: Path) -> dict[str, Any]:
    """Run one measurement in this process: wall seconds, peak RSS, and what it produced."""
    start = time.perf_counter()
    if kind == "bare":
        frames = {name: pl.read_csv(data / name) for name in FILES}
        produced: dict[str, Any] = {"rows": {name: frame.height for name, frame in frames.items()}}
    else:
        processed = load_and_preprocess(data, profile="lpoint")
        produced = {"funnel": processed.funnel, "labels": processed.vocab.n_labels}
    wall = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    return {"kind": kind, "wall_s": round(wall, 3), "peak_rss_mb": round(peak_kb / 1024, 1), **produced}


def run_child(kind: str, data: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.preprocess", "--child", kind, "--data", str(data)],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def ensure_data(data: Path) -> float | None:
    """Generate the lpoint preset into data unless it is there; the seconds it took, or None if reused."""
    if all((data / name).is_file() for name in FILES):
        return None
    start = time.perf_counter()
    generate(data, preset="lpoint")
    return round(time.perf_counter() - start, 1)


def report(data: Path, runs: list[dict[str, Any]], generate_s: float | None) -> dict[str, Any]:
    bare = min((r for r in runs if r["kind"] == "bare"), key=lambda r: r["wall_s"])
    pre = min((r for r in runs if r["kind"] == "preprocess"), key=lambda r: r["wall_s"])
    ratio = pre["wall_s"] / bare["wall_s"]
    peak_gb = max(r["peak_rss_mb"] for r in runs if r["kind"] == "preprocess") / 1024
    return {
        "data": str(data),
        "csv_mb": {name: round((data / name).stat().st_size / 2**20, 1) for name in FILES},
        "rows": bare["rows"],
        "generate_s": generate_s,
        "bare_read_s": bare["wall_s"],
        "bare_read_peak_rss_mb": bare["peak_rss_mb"],
        "load_preprocess_s": pre["wall_s"],
        "load_preprocess_peak_rss_mb": pre["peak_rss_mb"],
        "ratio": round(ratio, 2),
        "targets": {"ratio_max": TARGET_RATIO, "peak_rss_gb_max": TARGET_RSS_GB},
        "pass": {"ratio": ratio <= TARGET_RATIO, "peak_rss": peak_gb <= TARGET_RSS_GB},
        "funnel": pre["funnel"],
        "labels": pre["labels"],
        "runs": runs,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "polars": pl.__version__},
    }


def markdown(result: dict[str, Any]) -> str:
    r = result
    verdict = {True: "pass", False: "FAIL"}
    lines = [
        "# Preprocessing benchmark (`lpoint` preset)",
        "",
        f"Data: `{r['data']}`, {sum(r['rows'].values()):,} rows in four CSV files "
        f"({sum(r['csv_mb'].values()):,.0f} MB); {r['machine']['cpus']} CPUs, polars "
        f"{r['machine']['polars']}. Fastest of {len(r['runs']) // 2} alternating runs each.",
        "",
        "| measurement | wall (s) | peak RSS (MB) |",
        "|---|---:|---:|",
        f"| bare `pl.read_csv` of the four files | {r['bare_read_s']} | {r['bare_read_peak_rss_mb']} |",
        f"| load + validate + preprocess | {r['load_preprocess_s']} | {r['load_preprocess_peak_rss_mb']} |",
        "",
        f"Ratio {r['ratio']}x (target <= {TARGET_RATIO}x: {verdict[r['pass']['ratio']]}); "
        f"peak RSS target <= {TARGET_RSS_GB} GB: {verdict[r['pass']['peak_rss']]}.",
        "",
        "| file | rows | MB |",
        "|---|---:|---:|",
        *(f"| {name} | {r['rows'][name]:,} | {r['csv_mb'][name]} |" for name in FILES),
        "",
        "Funnel (rows / sessions / clients left after each rule):",
        "",
        "| step | rows | sessions | clients |",
        "|---|---:|---:|---:|",
        *(f"| {s['step']} | {s['rows']:,} | {s['sessions']:,} | {s['clients']:,} |" for s in r["funnel"]),
        "",
        f"{r['labels']} CLAC3 labels in use after the rules.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=Path("data/lpoint"))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--child", choices=["bare", "preprocess"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.data), ensure_ascii=False))
        return
    generate_s = ensure_data(args.data)
    runs = []
    for _ in range(args.repeats):
        for kind in ("bare", "preprocess"):
            runs.append(run_child(kind, args.data))
            print(f"{kind:>10}: {runs[-1]['wall_s']:7.2f} s, peak RSS {runs[-1]['peak_rss_mb']:8.1f} MB")
    result = report(args.data, runs, generate_s)
    write_results("preprocess", result, markdown(result))


if __name__ == "__main__":
    main()
