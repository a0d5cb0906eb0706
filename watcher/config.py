"""Settings: read once from `WATCHER_*` environment variables (and `.env`), typed, validated.

Every setting is documented in the README. Secrets may be given as a file path with the
`_FILE` suffix (`WATCHER_DATABASE_URL_FILE`), so they never need to sit in the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from watcher.db import locks

_SECRET_FILE_FIELDS = ("database_url", "slack_webhook_url")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="WATCHER_", env_file=".env", extra="ignore", frozen=True
    )

    # Database. No URL: an embedded PostgreSQL server in data_dir.
    database_url: SecretStr | None = None
    data_dir: Path = Path(".watcher-data")
    # Connections are held, not churned: an overflow connection is closed on return, so a
    # busy replica kept forking PostgreSQL backends and re-preparing statements.
    db_pool_size: int = Field(default=20, ge=1, le=200)
    db_max_overflow: int = Field(default=0, ge=0, le=200)
    # How long a request queues for a pooled connection before it is refused with 503
    # "busy" + Retry-After. Long enough for a top-of-the-hour burst to drain through the
    # pool (the queue is FIFO): a refused start is a run the client may not retry.
    db_pool_timeout_seconds: float = Field(default=30.0, gt=0, le=300)
    db_statement_timeout_ms: int = Field(default=30_000, ge=100)
    db_connect_timeout_seconds: float = Field(default=5.0, gt=0, le=120)

    # HTTP
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    log_level: str = "info"
    log_json: bool | None = None  # None: JSON unless stdout is a terminal
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    retry_after_seconds: int = Field(default=5, ge=1)

    # Scheduler and checks
    scheduler_enabled: bool = True
    leader_lock_id: int = locks.LEADER_DEFAULT
    leader_check_interval_seconds: float = Field(default=5.0, gt=0)
    # On shutdown: how long running jobs may finish before leadership is released.
    scheduler_stop_grace_seconds: float = Field(default=10.0, ge=0, le=300)
    timeliness_interval_seconds: float = Field(default=60.0, gt=0)
    timeliness_lookback_minutes: int = Field(default=60, ge=5)
    freshness_interval_seconds: float = Field(default=300.0, gt=0)
    missed_runs_interval_seconds: float = Field(default=60.0, gt=0)
    anomaly_catchup_interval_seconds: float = Field(default=60.0, gt=0)
    metrics_snapshot_interval_seconds: float = Field(default=5.0, gt=0)
    # Incidents (issue 15): how often the leader places problems into incidents, how long a
    # pipeline still broken after its root's incident resolved waits before it is promoted to
    # an incident of its own, and how far back a failed or late run that ended after a newer
    # overlapping one is looked for.
    # Off: no incidents are opened and nothing is inhibited (every pipeline alerts alone).
    incidents_enabled: bool = True
    incidents_interval_seconds: float = Field(default=60.0, gt=0)
    incident_grace_seconds: float = Field(default=900.0, ge=0)
    incident_lookback_minutes: int = Field(default=1440, ge=5)
    log_cleanup_interval_seconds: float = Field(default=86_400.0, gt=0)
    log_cleanup_retention_days: int | None = Field(default=None, ge=90)
    log_cleanup_batch_size: int = Field(default=10_000, ge=1)
    auto_create_anomaly_detection_rules: bool = False
    # Learned expectations (watcher/checks/learned): the learn job relearns at most
    # `learn_batch` pipelines with new runs per run; the learned check runs like the others.
    learn_interval_seconds: float = Field(default=300.0, gt=0)
    learn_batch: int = Field(default=500, ge=1, le=100_000)
    learned_check_interval_seconds: float = Field(default=60.0, gt=0)
    # Ingestion availability (watcher.availability): every replica records a heartbeat this
    # often; evidence in a window no replica was ingesting is unknown to the checks until
    # `ingest_catch_up_seconds` after the window ended (replayed runs arrive meanwhile).
    ingest_heartbeat_interval_seconds: float = Field(default=5.0, gt=0, le=60)
    ingest_catch_up_seconds: float = Field(default=600.0, ge=0, le=86_400)

    # Alerts and auth
    slack_webhook_url: SecretStr | None = None
    auth_enabled: bool = True
    allow_insecure_remote: bool = False

    # Development
    profiling: bool = False

    @model_validator(mode="before")
    @classmethod
    def _read_secret_files(cls, values: Any) -> Any:
        """`WATCHER_X_FILE=/path` supplies `x` from that file (Docker/Kubernetes secrets)."""
        if not isinstance(values, dict):
            return values
        for field in _SECRET_FILE_FIELDS:
            path = values.pop(f"{field}_file", None)
            if path and not values.get(field):
                values[field] = Path(path).read_text().strip()
        return values

    @property
    def embedded(self) -> bool:
        return self.database_url is None


_FILE_ENV = tuple(f"WATCHER_{f.upper()}_FILE" for f in _SECRET_FILE_FIELDS)


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with `*_FILE` secrets resolved; overrides win."""
    import os

    file_values = {
        env.removeprefix("WATCHER_").lower(): os.environ[env]
        for env in _FILE_ENV
        if env in os.environ
    }
    return Settings(**{**file_values, **overrides})
