"""Debian's wrk in the background against a server until stopped, with every kind of error it counts.

The closed-loop load of the rolling-restart test and of bench/reload.py: one thread, `connections`
keep-alive connections cycling through a list of request paths; SIGINT stops it early, and its Lua
`done` hook prints the figures as JSON (wrk's "Socket errors" line split into its four kinds, and
"Non-2xx or 3xx responses").
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

WRK = shutil.which("wrk")
MAX_SECONDS = 900  # wrk's own limit; it is stopped long before

SCRIPT = """
local paths = {%s}
local n = 0
request = function()
  n = n %% #paths + 1
  return wrk.format("GET", paths[n])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %%d, "seconds": %%f, "connect": %%d, "read": %%d, "write": %%d, "timeout": %%d, ' ..
    '"status": %%d, "p50_ms": %%f, "p99_ms": %%f}\\n',
    summary.requests, summary.duration / 1e6, e.connect, e.read, e.write, e.timeout, e.status,
    latency:percentile(50) / 1e3, latency:percentile(99) / 1e3))
end
"""


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run counted: requests answered, and errors by kind (`status`: answers >= 400)."""

    requests: int
    seconds: float
    connect: int
    read: int
    write: int
    timeout: int
    status: int
    p50_ms: float
    p99_ms: float

    @property
    def socket_errors(self) -> int:
        return self.connect + self.read + self.write + self.timeout

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds


@dataclass
class WrkRun:
    process: subprocess.Popen[str]
    result: WrkResult | None = None

    def stop(self) -> WrkResult:
        """Stop wrk (SIGINT: it reports what it measured so far) and return its figures."""
        if self.result is None:
            self.process.send_signal(signal.SIGINT)
            out, err = self.process.communicate(timeout=60)
            lines = out.strip().splitlines()
            if not lines or not lines[-1].startswith("{"):
                raise RuntimeError(f"wrk exited with {self.process.returncode}: {err or out}")
            self.result = WrkResult(**json.loads(lines[-1]))
        return self.result


@contextmanager
def wrk(url: str, paths: list[str], *, connections: int, timeout_s: int = 2) -> Iterator[WrkRun]:
    """wrk loading `url` with GETs of `paths` in turn until the block ends or `stop()` is called; a
    request unanswered after `timeout_s` (wrk's default 2 s) counts as a timeout error."""
    if WRK is None:
        raise RuntimeError("wrk is not installed (Debian: apt-get install wrk)")
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "paths.lua"
        script.write_text(SCRIPT % ", ".join(json.dumps(path) for path in paths), encoding="utf-8")
        command = [WRK, "-t1", f"-c{connections}", f"-d{MAX_SECONDS}s", f"--timeout={timeout_s}s"]
        command += ["-s", str(script), url]
        run = WrkRun(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        try:
            yield run
        finally:
            run.stop()
