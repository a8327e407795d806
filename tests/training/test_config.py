"""The nested training configuration: defaults, presets, files, dotted overrides, checked values."""

import json
from pathlib import Path

import pytest

from training.config import TrainConfig, load_config, presets
from training.errors import ConfigError


def test_load_config_defaults_without_file_or_overrides() -> None:
    assert load_config() == TrainConfig()


def test_defaults_are_the_validated_recipe() -> None:
    config = TrainConfig()
    assert (config.start.baseline, config.optim.loss, config.optim.rest_lr_scale) == ("auto", "lambda", 1e-3)
    assert config.method_name == "Wide & Deep"


def test_load_config_file_then_dotted_overrides_win(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"optim": {"lr": 0.5, "max_epochs": 9}, "model": {"hidden": [64, 32]}}))
    config = load_config(path, ["optim.lr=1e-4", "model.mode=wide", "ablations=false", "data.max_labels=4"])
    assert config.optim.lr == pytest.approx(1e-4)
    assert config.optim.max_epochs == 9  # the file's value, untouched by an override of a sibling
    assert config.model.hidden == (64, 32)
    assert (config.model.mode, config.ablations, config.data.max_labels) == ("wide", False, 4)
    assert config.method_name == "wide-only"


def test_preset_applies_before_file_and_overrides() -> None:
    assert "long-histories" in presets()
    config = load_config(preset="long-histories")
    assert (config.data.max_sessions, config.data.train_targets_per_client) == (40, 12)
    assert load_config(overrides=["data.max_sessions=20"], preset="long-histories").data.max_sessions == 20
    with pytest.raises(ConfigError, match="unknown preset 'nope'; known: long-histories"):
        load_config(preset="nope")


def test_config_round_trips_through_json() -> None:
    config = load_config(overrides=["start.baseline=P-Pop", "data.train_targets_per_client=3"])
    assert TrainConfig.model_validate(json.loads(json.dumps(config.to_json()))) == config


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lr=fast", "optim.lr"),
        ("optim.max_epochs=2.5", "optim.max_epochs"),
        ('model.hidden=[64, "x"]', "model.hidden"),
        ("model.hidden=[]", "model.hidden"),
        ("model.mode=both", "model.mode"),
        ("optim.loss=hinge", "optim.loss"),
        ("model.dropout=1.0", "model.dropout"),
        ("optim.batch_size=0", "optim.batch_size"),
        ("optim.rest_lr_scale=-1", "optim.rest_lr_scale"),
        ("start.baseline=SASRec", "start.baseline"),
        ("doc2vec.dm=2", "doc2vec.dm"),
        ("nope=1", "nope"),
        ("model.nope=1", "model.nope"),
        ("lr=1e-3", "lr"),  # the flat keys of old are gone: a clear error, not a silent no-op
        ("no_equals_sign", "section.key=VALUE"),
    ],
)
def test_load_config_bad_override_names_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("[", r"\[")):
        load_config(overrides=[override])


def test_settings_made_meaningless_by_another_are_errors() -> None:
    with pytest.raises(ConfigError, match=r"set start\.baseline=none"):
        load_config(overrides=["model.mode=deep"])
    with pytest.raises(ConfigError, match=r"set optim\.rest_lr_scale=1"):
        load_config(overrides=["start.baseline=none"])
    config = load_config(overrides=["start.baseline=none", "optim.rest_lr_scale=1", "model.mode=deep"])
    assert config.model.mode == "deep"


def test_with_mode_turns_the_start_off_for_deep_only() -> None:
    deep = TrainConfig().with_mode("deep")
    assert (deep.model.mode, deep.start.baseline, deep.optim.rest_lr_scale) == ("deep", "none", 1.0)
    assert TrainConfig().with_mode("wide").start.baseline == "auto"


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
