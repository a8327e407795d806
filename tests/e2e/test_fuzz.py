"""API fuzzing: schemathesis against the real server, every check, bounded examples, a fixed seed.

The key is sent, the same for the admin and the write routes, so POST /admin/reload reloads for real
between requests and the write routes record into a database of the test's own. What it asserts, per
generated request: no 5xx, every response matches its documented schema (status, content type, body,
headers), negative data is rejected, schema-valid data accepted. Exceptions, declared in the config below:
POST /score, GET /recommend and the write routes may answer 422 to schema-valid requests, because whether a
label, a top category, a product or an age exists (and whether filters leave a label) depends on the loaded
vocabulary, which no JSON schema states (nor does it state that a date may not lie in the future);
recording may answer 409 (a session ID the fuzzer used before, with another body).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import running_server

pytestmark = pytest.mark.slow  # trains the session's tiny artifacts and starts uvicorn

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
MAX_EXAMPLES, SEED = 30, 20261127
KEY = "fuzz-key"
CONFIG = """
[[operations]]
include-path = "/score"
checks.positive_data_acceptance.expected-statuses = ["2xx", "422"]

[[operations]]
include-path = "/recommend/{client_id}"
checks.positive_data_acceptance.expected-statuses = ["2xx", "404", "422"]

[[operations]]
include-path = "/clients/{client_id}"
checks.positive_data_acceptance.expected-statuses = ["2xx", "404", "422"]

[[operations]]
include-path = "/clients/{client_id}/sessions"
checks.positive_data_acceptance.expected-statuses = ["2xx", "409", "422"]
"""


def test_schemathesis_all_checks_find_no_failure(
    tiny_artifacts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A server of its own, with the keys, so that POST /admin/reload and the write routes are fuzzed too.
    monkeypatch.setenv("WDREC_ADMIN_API_KEY", KEY)
    monkeypatch.setenv("WDREC_WRITE_API_KEY", KEY)
    monkeypatch.setenv("WDREC_STATE_DIR", str(tmp_path / "state"))
    with running_server(tiny_artifacts, tmp_path / "serve.log") as server:
        done = _schemathesis(server.url, tmp_path)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    summary = done.stdout.split("SUMMARY")[-1]
    assert "Tested: 11" in summary  # every operation, /admin/reload and the write routes included
    assert "No issues found" in summary
    log = (tmp_path / "serve.log").read_text()
    assert "Traceback" not in log and "Exception in ASGI application" not in log


def _schemathesis(url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG, encoding="utf-8")
    command = [
        str(SCHEMATHESIS),
        "--config-file",
        str(config),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--generation-database",
        "none",  # no example store in the working directory: the run is a pure function of the seed
        "--request-timeout",
        "30",
        "--report-dir",
        str(tmp_path / "report"),
        "--no-color",
        "--header",
        f"X-API-Key: {KEY}",  # else the fuzzer only ever sees 401 there (and warns)
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
