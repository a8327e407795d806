from __future__ import annotations

from pathlib import Path

import pytest

from app.core.config import Settings, get_settings, load_settings, scoring_threads
from training.errors import ConfigError


def test_settings_env_prefix_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WDREC_PORT", "9123")
    monkeypatch.setenv("WDREC_ARTIFACTS_DIR", "/srv/models")
    monkeypatch.setenv("WDREC_CORS_ORIGINS", '["https://shop.example"]')
    settings = Settings()
    assert (settings.port, settings.artifacts_dir) == (9123, Path("/srv/models"))
    assert settings.cors_origins == ["https://shop.example"]


def test_settings_defaults_keep_cors_off_and_bind_loopback() -> None:
    settings = Settings()
    assert settings.cors_origins == []
    assert settings.host == "127.0.0.1"
    assert settings.max_k == 100


def test_load_settings_invalid_values_raise_one_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WDREC_PORT", "70000")
    monkeypatch.setenv("WDREC_MAX_K", "zero")
    with pytest.raises(ConfigError, match=r"invalid settings: WDREC_PORT: .*; WDREC_MAX_K: "):
        load_settings()


def test_settings_log_level_is_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WDREC_LOG_LEVEL", "WARNING")
    assert Settings().log_level == "warning"


def test_load_settings_overrides_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WDREC_PORT", "9000")
    assert load_settings(port=9001).port == 9001


def test_get_settings_is_cached() -> None:
    assert get_settings() is get_settings()


@pytest.mark.parametrize(("workers", "threads", "expected"), [(1, 0, 2), (2, 0, 1), (4, 0, 1), (2, 3, 3)])
def test_scoring_threads_default_to_the_cores_per_worker(
    monkeypatch: pytest.MonkeyPatch, workers: int, threads: int, expected: int
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    settings = Settings(workers=workers, inference_threads=threads)
    assert scoring_threads(settings) == expected
