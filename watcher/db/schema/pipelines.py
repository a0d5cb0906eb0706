"""Pipeline types, pipelines, their executions and the executions' nesting closure."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from watcher.db.schema.base import created_at, id_column, metadata, name_checks, updated_at

DATEPARTS = ("minute", "hour", "day", "week", "month", "year")
_DATEPART_SQL = ", ".join(f"'{d}'" for d in DATEPARTS)


def _rule_columns() -> list[Column[Any] | CheckConstraint]:
    """Freshness/timeliness rules, mutes and the cron schedule: on a type and on a pipeline."""
    return [
        Column("freshness_number", Integer),
        Column("freshness_datepart", Text),
        Column("mute_freshness_check", Boolean, nullable=False, server_default=text("false")),
        Column("timeliness_number", Integer),
        Column("timeliness_datepart", Text),
        Column("mute_timeliness_check", Boolean, nullable=False, server_default=text("false")),
        Column("schedule", Text),
        Column("schedule_timezone", Text),
        Column("schedule_grace_seconds", Integer),
        CheckConstraint(
            f"freshness_datepart is null or freshness_datepart in ({_DATEPART_SQL})",
            name="freshness_datepart_valid",
        ),
        CheckConstraint(
            f"timeliness_datepart is null or timeliness_datepart in ({_DATEPART_SQL})",
            name="timeliness_datepart_valid",
        ),
        CheckConstraint(
            "(freshness_number is null) = (freshness_datepart is null)", name="freshness_pair"
        ),
        CheckConstraint(
            "(timeliness_number is null) = (timeliness_datepart is null)", name="timeliness_pair"
        ),
        CheckConstraint("freshness_number is null or freshness_number > 0", name="freshness_pos"),
        CheckConstraint(
            "timeliness_number is null or timeliness_number > 0", name="timeliness_pos"
        ),
        CheckConstraint(
            "schedule_grace_seconds is null or schedule_grace_seconds >= 0", name="grace_nonneg"
        ),
    ]


pipeline_type = Table(
    "pipeline_type",
    metadata,
    id_column(),
    Column("name", Text, nullable=False, unique=True),
    Column("group_name", Text),
    *_rule_columns(),
    created_at(),
    updated_at(),
    *name_checks("pipeline_type"),
)

pipeline = Table(
    "pipeline",
    metadata,
    id_column(),
    Column("name", Text, nullable=False, unique=True),
    Column(
        "pipeline_type_id",
        BigInteger,
        ForeignKey("pipeline_type.id", ondelete="RESTRICT"),
        nullable=False,
        index=True,
    ),
    Column("watermark", Text),
    Column("next_watermark", Text),
    Column("pipeline_metadata", JSONB),
    Column("last_target_insert", DateTime(timezone=True)),
    Column("last_target_update", DateTime(timezone=True)),
    Column("last_target_soft_delete", DateTime(timezone=True)),
    *_rule_columns(),
    Column("load_lineage", Boolean, nullable=False, server_default=text("true")),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    created_at(),
    updated_at(),
    *name_checks("pipeline"),
)

_COUNTS = ("inserts", "updates", "soft_deletes", "total_rows")

pipeline_execution = Table(
    "pipeline_execution",
    metadata,
    id_column(),
    Column(
        "parent_id",
        BigInteger,
        ForeignKey("pipeline_execution.id", ondelete="SET NULL"),
    ),
    Column(
        "pipeline_id",
        BigInteger,
        ForeignKey("pipeline.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("start_date", DateTime(timezone=True), nullable=False),
    Column("end_date", DateTime(timezone=True)),
    Column("duration_seconds", Double),
    Column("completed_successfully", Boolean),
    *(Column(name, BigInteger) for name in _COUNTS),
    Column("throughput", Double),
    Column("watermark", Text),
    Column("next_watermark", Text),
    Column("execution_metadata", JSONB),
    Column("anomaly_flags", JSONB),
    Column("hour_recorded", SmallInteger, nullable=False),
    Column("date_recorded", Date, nullable=False),
    Column("run_id", Text, unique=True),
    # Set once anomaly detection has evaluated this (successful) execution; the catch-up
    # job picks up successful executions where it is still null.
    Column("anomaly_checked_at", DateTime(timezone=True)),
    created_at(),
    *(CheckConstraint(f"{name} is null or {name} >= 0", name=f"{name}_nonneg") for name in _COUNTS),
    CheckConstraint("end_date is null or end_date >= start_date", name="end_after_start"),
    CheckConstraint("parent_id is null or parent_id <> id", name="parent_not_self"),
    CheckConstraint("hour_recorded between 0 and 23", name="hour_valid"),
    CheckConstraint(
        "(end_date is null) = (completed_successfully is null)", name="ended_has_status"
    ),
    # Latest executions of a pipeline (GET, metrics snapshot, anomaly baseline).
    Index("ix_pipeline_execution_pipeline_id_start_date", "pipeline_id", "start_date"),
    # Timeliness (executions started within the lookback) and log cleanup (older than cutoff).
    Index("ix_pipeline_execution_start_date", "start_date"),
    Index("ix_pipeline_execution_parent_id", "parent_id"),
    # Running executions (timeliness, metrics): small partial index.
    Index(
        "ix_pipeline_execution_running",
        "pipeline_id",
        "start_date",
        postgresql_where=text("end_date is null"),
    ),
    # Anomaly baseline: same pipeline, same UTC hour, successful, end within lookback.
    Index(
        "ix_pipeline_execution_baseline",
        "pipeline_id",
        "hour_recorded",
        "end_date",
        postgresql_where=text("completed_successfully"),
    ),
    # Anomaly catch-up: successful executions not evaluated yet.
    Index(
        "ix_pipeline_execution_unchecked",
        "end_date",
        postgresql_where=text("completed_successfully and anomaly_checked_at is null"),
    ),
)

pipeline_execution_closure = Table(
    "pipeline_execution_closure",
    metadata,
    Column(
        "ancestor_id",
        BigInteger,
        ForeignKey("pipeline_execution.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column(
        "descendant_id",
        BigInteger,
        ForeignKey("pipeline_execution.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("depth", Integer, nullable=False),
    CheckConstraint("depth >= 0", name="depth_nonneg"),
    Index("ix_pipeline_execution_closure_descendant_id", "descendant_id"),
)
