import json
from pathlib import Path

import pytest

from training.config import TrainConfig, load_config
from training.errors import ConfigError


def test_load_config_defaults_without_file_or_overrides() -> None:
    assert load_config() == TrainConfig()


def test_load_config_file_then_overrides_win(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"lr": 0.01, "hidden": [64, 32], "mode": "wide"}))
    config = load_config(path, ["lr=1e-4", "mode=deep", "ablations=false", "max_epochs=3"])
    assert config.lr == pytest.approx(1e-4)
    assert config.hidden == (64, 32)
    assert config.mode == "deep"
    assert config.ablations is False
    assert config.max_epochs == 3


def test_load_config_tifu_start_with_lambda_loss() -> None:
    config = load_config(overrides=["loss=lambda", "tifu_group_size=3", "tifu_across=0.9", "rest_lr_scale=0"])
    assert (config.loss, config.tifu_group_size, config.tifu_across, config.rest_lr_scale) == (
        "lambda",
        3,
        0.9,
        0.0,
    )
    assert TrainConfig().tifu_group_size == 0  # off by default


def test_load_config_int_accepted_for_float() -> None:
    assert load_config(overrides=["lr=1"]).lr == 1.0


@pytest.mark.parametrize(
    "override",
    [
        "lr=fast",
        "max_epochs=2.5",
        "ablations=1",
        'hidden=[64, "x"]',
        "mode=both",
        "loss=hinge",
        "dropout=1.0",
        "batch_size=0",
        "tifu_group_size=-1",
        "tifu_within=0",
        "tifu_across=1.5",
        "tifu_alpha=1.5",
        "rest_lr_scale=-1",
        "nope=1",
        "no_equals_sign",
    ],
)
def test_load_config_bad_override_raises_config_error(override: str) -> None:
    with pytest.raises(ConfigError):
        load_config(overrides=[override])


def test_load_config_unreadable_or_non_object_file_raises(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="JSON object"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.json")


def test_torch_threads_zero_means_cpu_count() -> None:
    assert TrainConfig(threads=0).torch_threads >= 1
    assert TrainConfig(threads=3).torch_threads == 3
