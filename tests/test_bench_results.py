import json
from pathlib import Path

import pytest

import bench


def _cpuinfo_model() -> str:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="needs /proc/cpuinfo")
def test_results_name_the_cpu_they_were_measured_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench, "RESULTS", tmp_path)
    bench.write_results("example", {"clients_per_s": 1.0}, "# Example\n\n| a |\n")
    written = json.loads((tmp_path / "example.json").read_text())
    assert written["clients_per_s"] == 1.0
    assert written["cpu"].startswith(_cpuinfo_model()) and written["cpu"].endswith(" cores")
    assert (tmp_path / "example.md").read_text() == f"# Example\n\n| a |\n\nMeasured on: {written['cpu']}.\n"
