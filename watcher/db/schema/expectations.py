"""Learned expectations: settings and results per pipeline and type, feedback, findings,
maintenance windows."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from watcher.db.schema.base import created_at, id_column, metadata, updated_at

# Learned expectations (watcher/expectations, watcher/checks/learned). One row per pipeline
# that has been learned or has feedback: the settings the user gave (sensitivity, opt-out,
# "retrain from") and the last learned `Expectations` (JSONB, `Expectations.to_json`).
# `learned_through` is the latest execution start the learning saw: the learn job relearns
# only pipelines with a later start (incremental; see `learned.store`).
SENSITIVITIES = ("low", "medium", "high")
_SENSITIVITY_SQL = ", ".join(f"'{s}'" for s in SENSITIVITIES)
pipeline_expectation = Table(
    "pipeline_expectation",
    metadata,
    Column(
        "pipeline_id",
        BigInteger,
        ForeignKey("pipeline.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("expectations", JSONB),
    Column("trained_at", DateTime(timezone=True)),
    Column("learned_through", DateTime(timezone=True)),
    Column("sensitivity", Text),
    Column("opted_out", Boolean, nullable=False, server_default=text("false")),
    Column("retrain_from", DateTime(timezone=True)),
    updated_at(),
    CheckConstraint(
        f"sensitivity is null or sensitivity in ({_SENSITIVITY_SQL})", name="sensitivity_valid"
    ),
)

# Per-type defaults of the same settings; a pipeline's own setting wins.
pipeline_type_expectation = Table(
    "pipeline_type_expectation",
    metadata,
    Column(
        "pipeline_type_id",
        BigInteger,
        ForeignKey("pipeline_type.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("sensitivity", Text),
    Column("opted_out", Boolean, nullable=False, server_default=text("false")),
    updated_at(),
    CheckConstraint(
        f"sensitivity is null or sensitivity in ({_SENSITIVITY_SQL})", name="sensitivity_valid"
    ),
)

# The user's word on one run: 'fine' (a flagged run is normal: train on it) or 'excluded'
# (never train on it).
expectation_feedback = Table(
    "expectation_feedback",
    metadata,
    Column(
        "pipeline_execution_id",
        BigInteger,
        ForeignKey("pipeline_execution.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column(
        "pipeline_id", BigInteger, ForeignKey("pipeline.id", ondelete="CASCADE"), nullable=False
    ),
    Column("verdict", Text, nullable=False),
    created_at(),
    CheckConstraint("verdict in ('fine', 'excluded')", name="verdict_valid"),
    Index("ix_expectation_feedback_pipeline_id", "pipeline_id"),
)

# Findings of the learned check, logged once per (pipeline, kind, metric, subject): the
# subject is the late slot's due time, the overdue or anomalous run's start, or the last
# change of a stale pipeline. `expected` holds the band / slot the finding broke.
LEARNED_KINDS = ("late_start", "overdue", "stale", "anomaly")
_KINDS_SQL = ", ".join(f"'{k}'" for k in LEARNED_KINDS)
learned_finding_log = Table(
    "learned_finding_log",
    metadata,
    id_column(),
    Column(
        "pipeline_id", BigInteger, ForeignKey("pipeline.id", ondelete="CASCADE"), nullable=False
    ),
    Column("kind", Text, nullable=False),
    Column("metric", Text, nullable=False, server_default=text("''")),
    Column("subject", DateTime(timezone=True), nullable=False),
    Column(
        "pipeline_execution_id",
        BigInteger,
        ForeignKey("pipeline_execution.id", ondelete="CASCADE"),
    ),
    Column("detected_at", DateTime(timezone=True), nullable=False),
    Column("expected", JSONB, nullable=False),
    Column("message", Text, nullable=False),
    created_at(),
    CheckConstraint(f"kind in ({_KINDS_SQL})", name="kind_valid"),
    UniqueConstraint("pipeline_id", "kind", "metric", "subject"),
    Index("ix_learned_finding_log_created_at", "created_at"),
    Index("ix_learned_finding_log_pipeline_execution_id", "pipeline_execution_id"),
)

# A declared maintenance window: for one pipeline, one pipeline type, or (neither set) every
# pipeline. Runs overlapping it are left out of learning; the learned check finds nothing for
# the pipelines it covers while it lasts (watcher/expectations/maintenance.py).
maintenance_window = Table(
    "maintenance_window",
    metadata,
    id_column(),
    Column("pipeline_id", BigInteger, ForeignKey("pipeline.id", ondelete="CASCADE")),
    Column("pipeline_type_id", BigInteger, ForeignKey("pipeline_type.id", ondelete="CASCADE")),
    Column("start_date", DateTime(timezone=True), nullable=False),
    Column("end_date", DateTime(timezone=True), nullable=False),
    Column("reason", Text, nullable=False),
    created_at(),
    CheckConstraint("end_date > start_date", name="ends_after_start"),
    CheckConstraint("pipeline_id IS NULL OR pipeline_type_id IS NULL", name="one_scope"),
    Index("ix_maintenance_window_end_date", "end_date"),
)
