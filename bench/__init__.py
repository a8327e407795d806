"""Benchmarks: each prints its figures and writes results/<name>.json beside a readable results/<name>.md."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[1] / "results"


def targets_table(targets: Mapping[str, bool]) -> list[str]:
    """Markdown rows saying which targets a run met."""
    return ["| target | met |", "|---|---|"] + [
        f"| {name} | {'yes' if met else '**no**'} |" for name, met in targets.items()
    ]


def cpu() -> str:
    """The CPU's model name (/proc/cpuinfo; the platform's machine type where there is none) and cores: the
    machine's CPU can change under a VM, and training rounds differently on another CPU."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), None)
    return f"{model or platform.machine()}, {os.cpu_count()} cores"


def write_results(name: str, result: Any, markdown: str) -> None:
    """results/<name>.json and results/<name>.md, each naming the CPU it was measured on, then the Markdown
    on stdout."""
    measured_on = cpu()
    if isinstance(result, dict):
        result = {**result, "cpu": measured_on}
    markdown = f"{markdown.rstrip()}\n\nMeasured on: {measured_on}.\n"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown)
    print(markdown)
