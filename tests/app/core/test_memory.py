"""glibc malloc settings of the service's processes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = """
import os, sys
from app.core.memory import limit_malloc_arenas
print(limit_malloc_arenas(int(sys.argv[1])), os.environ.get("MALLOC_ARENA_MAX"))
"""


def _probe(arenas: int, **env: str) -> str:
    """What limit_malloc_arenas(arenas) returns and leaves in MALLOC_ARENA_MAX, in a fresh process."""
    base = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(arenas)], env=base | env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_arenas_are_capped_for_the_process_and_the_processes_it_starts() -> None:
    assert _probe(1) == "True 1"
    assert _probe(0) == "False None"  # 0: glibc's default, nothing set
    assert _probe(1, MALLOC_ARENA_MAX="4") == "False 4"  # the operator's own setting wins
