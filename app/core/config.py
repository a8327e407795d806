"""Service settings: one pydantic-settings class read from `WDREC_*` environment variables."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from training.errors import ConfigError

LogLevel = Literal["critical", "error", "warning", "info", "debug"]


class Settings(BaseSettings):
    """Everything the service reads from its environment (prefix `WDREC_`, e.g. `WDREC_PORT=9000`)."""

    model_config = SettingsConfigDict(env_prefix="WDREC_", extra="ignore")

    artifacts_dir: Path = Path("artifacts")  # the root holding `current`, or one version folder
    host: str = "127.0.0.1"  # loopback unless told otherwise: the API has no authentication
    port: int = Field(default=8000, ge=1, le=65535)
    # Worker processes (app/workers.py): one process is bound to one core by the GIL; 2 on 2 cores gave
    # POST /score 2x the throughput of one and a p99 of 22 ms instead of 50 (results/serve.md), at ~400 MB
    # of memory each.
    workers: int = Field(default=1, ge=1)
    max_k: int = Field(default=100, ge=1)  # the top-k bound is min(max_k, number of labels)
    cors_origins: list[str] = []  # CORS is off unless origins are listed (JSON list in the env)
    log_level: Annotated[LogLevel, BeforeValidator(lambda v: v.lower() if isinstance(v, str) else v)] = "info"
    # uvicorn's line per request; turned off (where a proxy logs them), an uncached /recommend costs 15% less.
    access_log: bool = True
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)  # a full basket + history is a few kB
    max_basket_len: int = Field(default=100, ge=1)  # labels per session in POST /score
    max_history_len: int = Field(default=50, ge=1)  # sessions in POST /score's history
    # GET /recommend bodies kept per loaded version, each valid while its client's revision is current.
    recommend_cache_size: int = Field(default=10_000, ge=0)
    # Each client's ranking computed after its writes, a reload and at midnight, and stored in the database:
    # GET /recommend answers from it while current instead of computing (app/rankings.py).
    stored_rankings: bool = True
    # Scoring threads per process, each running one batch at a time on one torch thread, so concurrent
    # requests queue (and batch) instead of oversubscribing the CPU. 0: the cores per worker process (2 for
    # one process on 2 cores; 1 for two, where a second thread per process only fought for its GIL:
    # /score p99 45 ms instead of 27 ms).
    inference_threads: int = Field(default=0, ge=0)
    # Requests waiting while those threads are busy are scored together, up to this many per forward pass.
    max_batch: int = Field(default=64, ge=1)
    # glibc malloc arenas per process (0: glibc's default, 8 per core). Each thread that allocates under
    # contention gets an arena of its own, which keeps what it frees: a worker grew 35 MB over a minute of
    # mixed reads and writes with the default and 16 MB with 1 arena, at the same throughput
    # (results/load.md). The operator's MALLOC_ARENA_MAX, if set, wins.
    malloc_arenas: int = Field(default=1, ge=0)
    # POST /admin/reload exists only when set; callers send it in the X-API-Key header.
    admin_api_key: SecretStr | None = None
    # The write routes (POST /clients/{id}/sessions, PUT /clients/{id}) exist only when set; same header.
    write_api_key: SecretStr | None = None
    # The database of recorded sessions: a PostgreSQL URL (postgresql://user:password@host/db) shared by
    # every replica, or unset for the embedded SQLite file `wdrec.sqlite3` in `state_dir`.
    database_url: SecretStr | None = None
    state_dir: Path | None = None  # default: `state/` beside the artifacts root


def scoring_threads(settings: Settings) -> int:
    """`inference_threads`, or for 0 the cores per worker process (at least 1)."""
    return settings.inference_threads or max(1, (os.cpu_count() or 1) // settings.workers)


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, `overrides` first; ConfigError naming each invalid variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"WDREC_{'_'.join(str(part) for part in error['loc'][:1]).upper()}: {error['msg']}"
            for error in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from None


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once; tests pass their own `Settings` to `create_app` instead."""
    return load_settings()
