"""Anomaly detection: the rules per pipeline and metric, the results per run, the baselines."""

from __future__ import annotations

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
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from watcher.db.schema.base import created_at, id_column, metadata, updated_at

ANOMALY_METRICS = (
    "duration_seconds",
    "inserts",
    "updates",
    "soft_deletes",
    "total_rows",
    "throughput",
)
_METRIC_SQL = ", ".join(f"'{m}'" for m in ANOMALY_METRICS)


anomaly_detection_rule = Table(
    "anomaly_detection_rule",
    metadata,
    id_column(),
    Column(
        "pipeline_id", BigInteger, ForeignKey("pipeline.id", ondelete="CASCADE"), nullable=False
    ),
    Column("metric_field", Text, nullable=False),
    Column("z_threshold", Double, nullable=False, server_default=text("3.0")),
    Column("lookback_days", Integer, nullable=False, server_default=text("30")),
    Column("minimum_executions", Integer, nullable=False, server_default=text("30")),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    created_at(),
    updated_at(),
    UniqueConstraint("pipeline_id", "metric_field"),
    CheckConstraint(f"metric_field in ({_METRIC_SQL})", name="metric_valid"),
    CheckConstraint("z_threshold between 1 and 10", name="z_threshold_range"),
    CheckConstraint("lookback_days between 1 and 365", name="lookback_range"),
    CheckConstraint("minimum_executions between 5 and 1000", name="minimum_range"),
)

anomaly_detection_result = Table(
    "anomaly_detection_result",
    metadata,
    id_column(),
    Column(
        "pipeline_execution_id",
        BigInteger,
        ForeignKey("pipeline_execution.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column(
        "rule_id",
        BigInteger,
        ForeignKey("anomaly_detection_rule.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("violation_value", Double, nullable=False),
    Column("z_score", Double, nullable=False),
    Column("historical_mean", Double, nullable=False),
    Column("std_deviation_value", Double, nullable=False),
    Column("z_threshold", Double, nullable=False),
    Column("threshold_min_value", Double, nullable=False),
    Column("threshold_max_value", Double, nullable=False),
    Column("baseline_count", Integer, nullable=False),
    Column("is_anomaly", Boolean, nullable=False),
    Column("context", JSONB),
    Column("detected_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("pipeline_execution_id", "rule_id"),
    Index("ix_anomaly_detection_result_detected_at", "detected_at"),
    # A rule's latest result (metrics snapshot: one probe per rule) and the FK's lookups.
    Index("ix_anomaly_detection_result_rule_latest", "rule_id", "detected_at", "id"),
    # Anomalies found per rule (metrics snapshot): only the anomalous results, not all.
    Index(
        "ix_anomaly_detection_result_anomalies",
        "rule_id",
        postgresql_where=text("is_anomaly"),
    ),
)

# Running anomaly baselines (watcher.checks.anomalies.baselines): per pipeline, UTC start
# hour and UTC day of the end, each metric's count, mean, M2, min and max over the evaluated,
# unflagged successful executions, so an evaluation reads ≤ lookback + 1 rows, not the runs.
BASELINE_PARTS = (
    ("n", BigInteger),
    ("mean", Double),
    ("m2", Double),
    ("lo", Double),
    ("hi", Double),
)
anomaly_baseline_day = Table(
    "anomaly_baseline_day",
    metadata,
    Column(
        "pipeline_id",
        BigInteger,
        ForeignKey("pipeline.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("hour_recorded", SmallInteger, primary_key=True),
    Column("day", Date, primary_key=True),
    Column("max_end", DateTime(timezone=True)),
    *(
        Column(f"{metric}_{part}", kind, nullable=part != "n", server_default=None)
        for metric in ANOMALY_METRICS
        for part, kind in BASELINE_PARTS
    ),
    *(CheckConstraint(f"{metric}_n >= 0", name=f"{metric}_n_nonneg") for metric in ANOMALY_METRICS),
)
