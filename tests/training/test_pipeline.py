import json
from pathlib import Path

import polars as pl
import pytest

from training.artifacts import CURRENT, load_artifacts
from training.errors import ConfigError
from training.evaluate import run_evaluate
from training.pipeline import data_fingerprint, run_training

FAST = (
    "threads=1",
    "max_epochs=6",
    "patience=2",
    "d2v_epochs=5",
    "d2v_infer_epochs=5",
    "d2v_vector_size=16",
    "hidden=[64, 32]",
)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.generate import generate

    out = tmp_path_factory.mktemp("data")
    generate(out, clients=300, seed=7)
    return out


@pytest.mark.slow
def test_run_training_end_to_end_beats_gpop_and_switches_current(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    version = run_training(tiny_data, tmp_path, overrides=FAST)
    assert (tmp_path / CURRENT).resolve() == version.resolve()
    metadata = json.loads((version / "metadata.json").read_text())
    test = metadata["metrics"]["test"]
    assert set(test) == {"W&D", "wide-only", "deep-only", "G-Pop", "P-Pop"}
    assert test["W&D"]["ndcg@10"] > test["G-Pop"]["ndcg@10"]
    for name in ("report.md", "metrics.json", "curves.png"):
        assert name in metadata["files"]
    assert metadata["data"]["fingerprint"] == data_fingerprint(tiny_data)
    assert metadata["feature_schema"]["n_labels"] == metadata["n_labels"]
    loaded = load_artifacts(tmp_path)
    assert loaded.clients.height == metadata["n_clients"]
    assert "products" in metadata["timings"] and loaded.products is not None
    # every known client's own products are among the products sold, in labels of the vocabulary
    own = loaded.products.clients
    assert own["row"].max() < metadata["n_clients"] and own["label"].max() < metadata["n_labels"]
    sold = pl.read_csv(tiny_data / "Product.csv", columns=["PD_C"])["PD_C"].unique()
    assert loaded.products.catalogue["PD_C"].is_in(sold.implode()).all()
    # `wdrec evaluate` recomputes the same test figures from the artifacts alone.
    again = run_evaluate(tmp_path)
    assert again["test"]["W&D"]["ndcg@10"] == pytest.approx(test["W&D"]["ndcg@10"], abs=1e-9)
    assert again["test"]["P-Pop"] == pytest.approx(test["P-Pop"])
    assert "W&D" in capsys.readouterr().out


def test_run_training_bad_override_fails_before_any_write(tiny_data: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        run_training(tiny_data, tmp_path / "artifacts", overrides=["mode=nope"])
    assert not (tmp_path / "artifacts").exists()
