"""Benchmarks: each prints its figures and writes results/<name>.json beside a readable results/<name>.md."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[1] / "results"


def targets_table(targets: Mapping[str, bool]) -> list[str]:
    """Markdown rows saying which targets a run met."""
    return ["| target | met |", "|---|---|"] + [
        f"| {name} | {'yes' if met else '**no**'} |" for name, met in targets.items()
    ]


def write_results(name: str, result: Any, markdown: str) -> None:
    """results/<name>.json and results/<name>.md, then the Markdown on stdout."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown)
    print(markdown)
