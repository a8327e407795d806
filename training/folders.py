"""Replacing a whole output folder atomically: readers see the old folder or the complete new one."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path


def replace_folder(out_dir: Path, write: Callable[[Path], None]) -> None:
    """`write(stage)` fills a hidden sibling folder, which is then renamed over `out_dir`; if `write` fails,
    the stage is removed and `out_dir` is left as it was."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    stage = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    try:
        write(stage)
        old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
        if out_dir.exists():
            out_dir.rename(old)
        stage.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
