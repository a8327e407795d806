"""Keeping the loaded model out of the cyclic garbage collector's way, freed tensors' pages in the process
for the next batch, and the service's malloc arenas few; a process's peak memory."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)


def freeze_long_lived() -> None:
    """Move every object alive now (loaded artifacts, imported modules) out of the collector's reach.

    A loaded service holds ~280k tracked objects, so each full collection took ~125 ms with the event loop
    stopped, and under load one ran every few seconds: that pause was the p99 of POST /score. Call after
    each (re)load; the previous freeze is undone first, so what an old version leaves behind is collected.
    """
    started = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    logger.info(
        "froze %d long-lived objects in %.0f ms", gc.get_freeze_count(), 1e3 * (time.perf_counter() - started)
    )


# glibc's mallopt parameters (malloc.h) and the largest mmap threshold it accepts on 64-bit systems.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
MMAP_THRESHOLD_MAX = 32 * 2**20
TRIM_THRESHOLD = 2**30


def _mallopt() -> Callable[[int, int], int] | None:
    """glibc's mallopt, or None where the C library has none."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return getattr(libc, "mallopt", None)


def limit_malloc_arenas(arenas: int) -> bool:
    """Cap this process's glibc malloc arenas at `arenas` (0: leave glibc's default) unless MALLOC_ARENA_MAX
    is set, and set MALLOC_ARENA_MAX for the processes it starts; False where nothing changed. Call before
    the process starts threads: an arena made before stays."""
    if arenas <= 0 or "MALLOC_ARENA_MAX" in os.environ:
        return False
    os.environ["MALLOC_ARENA_MAX"] = str(arenas)
    mallopt = _mallopt()
    return mallopt is not None and bool(mallopt(M_ARENA_MAX, arenas))


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep what a large batch frees for the next one (False where the C library is not
    glibc: nothing changed).

    By default, an allocation over 128 kB (adapting upwards as such blocks are freed) gets fresh pages from
    the kernel and a free returns them, so a batch of 256 clients page-faulted its ~13 MB activations in
    anew on every forward pass: 15% of its time (bench/batch.py). Here blocks up to 32 MB come from the
    heap, which keeps up to 1 GB of free memory instead of trimming it; the peak stays that of one batch.
    For one-off jobs that run many large batches; the service's batches are small."""
    mallopt = _mallopt()
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


def peak_rss_mb(pid: int | str = "self") -> float | None:
    """The peak resident set (VmHWM) of process `pid` since it started its program, in MB; None where /proc
    has no such figure. Not getrusage's ru_maxrss, which also counts the parent's pages a child held
    between fork and exec."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(found[1]) / 1024 if found else None
