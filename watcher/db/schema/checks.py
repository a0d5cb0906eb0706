"""The logs of the timeliness, freshness and missed-run checks, and what cleanup pruned."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    Table,
    Text,
    UniqueConstraint,
)

from watcher.db.schema.base import created_at, id_column, metadata

timeliness_pipeline_execution_log = Table(
    "timeliness_pipeline_execution_log",
    metadata,
    id_column(),
    Column(
        "pipeline_execution_id",
        BigInteger,
        ForeignKey("pipeline_execution.id", ondelete="CASCADE"),
        nullable=False,
        unique=True,
    ),
    Column(
        "pipeline_id", BigInteger, ForeignKey("pipeline.id", ondelete="CASCADE"), nullable=False
    ),
    Column("duration_seconds", Double, nullable=False),
    Column("seconds_threshold", Double, nullable=False),
    Column("execution_status", Text, nullable=False),
    Column("timely_number", Integer, nullable=False),
    Column("timely_datepart", Text, nullable=False),
    Column("used_child_config", Boolean, nullable=False),
    created_at(),
    CheckConstraint("execution_status in ('running', 'completed')", name="status_valid"),
    Index("ix_timeliness_pipeline_execution_log_pipeline_id", "pipeline_id"),
    Index("ix_timeliness_pipeline_execution_log_created_at", "created_at"),
)

freshness_pipeline_log = Table(
    "freshness_pipeline_log",
    metadata,
    id_column(),
    Column(
        "pipeline_id", BigInteger, ForeignKey("pipeline.id", ondelete="CASCADE"), nullable=False
    ),
    Column("last_dml_timestamp", DateTime(timezone=True), nullable=False),
    Column("evaluation_timestamp", DateTime(timezone=True), nullable=False),
    Column("freshness_number", Integer, nullable=False),
    Column("freshness_datepart", Text, nullable=False),
    Column("used_child_config", Boolean, nullable=False),
    created_at(),
    UniqueConstraint("pipeline_id", "last_dml_timestamp"),
    Index("ix_freshness_pipeline_log_created_at", "created_at"),
)

missed_run_log = Table(
    "missed_run_log",
    metadata,
    id_column(),
    Column(
        "pipeline_id", BigInteger, ForeignKey("pipeline.id", ondelete="CASCADE"), nullable=False
    ),
    Column("expected_at", DateTime(timezone=True), nullable=False),
    Column("detected_at", DateTime(timezone=True), nullable=False),
    Column("schedule", Text, nullable=False),
    Column("schedule_timezone", Text, nullable=False),
    Column("grace_seconds", Integer, nullable=False),
    Column("used_child_config", Boolean, nullable=False),
    created_at(),
    UniqueConstraint("pipeline_id", "expected_at"),
    Index("ix_missed_run_log_created_at", "created_at"),
)

# Log rows that log cleanup deleted, per pipeline and counter. The metrics export the
# per-pipeline "violations" and "anomalies detected" counters as rows logged + rows pruned,
# so they never go down when old logs are removed (a drop would read as a counter reset and
# `increase()` would count every remaining row again: false alerts after each cleanup).
PRUNED_KINDS = ("timeliness", "freshness", "missed_run", "anomaly", "learned")
pruned_log_count = Table(
    "pruned_log_count",
    metadata,
    Column(
        "pipeline_id",
        BigInteger,
        ForeignKey("pipeline.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("kind", Text, primary_key=True),  # one of PRUNED_KINDS
    Column("label", Text, primary_key=True),  # timeliness status, anomaly metric, or ''
    Column("rows", BigInteger, nullable=False),
    CheckConstraint("rows >= 0", name="rows_non_negative"),
    CheckConstraint(
        "kind IN ('timeliness', 'freshness', 'missed_run', 'anomaly', 'learned')",
        name="kind_known",
    ),
)
