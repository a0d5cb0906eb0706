"""The whole PostgreSQL schema of Watcher: one MetaData, every table, every constraint named.

Alembic compares its migrations against this module (`alembic check` runs in the tests), so
a change here without a migration fails the suite.

Invariants kept by the database itself rather than by the code:
- names of pipelines, pipeline types, addresses and address types are stored lowercased and
  trimmed, and are unique (the API normalises them before they get here);
- counts are >= 0, an execution ends after it starts and is never its own parent;
- every execution has its depth-0 row in `pipeline_execution_closure`;
- lineage edges are unique per (pipeline, source, target), and `address_lineage_closure`
  holds the shortest distance between every pair of addresses connected by a path.
"""

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
    Identity,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

DATEPARTS = ("minute", "hour", "day", "week", "month", "year")
ANOMALY_METRICS = (
    "duration_seconds",
    "inserts",
    "updates",
    "soft_deletes",
    "total_rows",
    "throughput",
)
_DATEPART_SQL = ", ".join(f"'{d}'" for d in DATEPARTS)
_METRIC_SQL = ", ".join(f"'{m}'" for m in ANOMALY_METRICS)


def _id() -> Column[int]:
    return Column("id", BigInteger, Identity(always=False), primary_key=True)


def _created_at() -> Column[Any]:
    return Column(
        "created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")
    )


def _updated_at() -> Column[Any]:
    return Column(
        "updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")
    )


def _name_checks(table: str, column: str = "name") -> list[CheckConstraint]:
    return [
        CheckConstraint(f"{column} = lower(btrim({column}))", name=f"{column}_normalised"),
        CheckConstraint(f"length({column}) between 1 and 150", name=f"{column}_length"),
    ]


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
    _id(),
    Column("name", Text, nullable=False, unique=True),
    Column("group_name", Text),
    *_rule_columns(),
    _created_at(),
    _updated_at(),
    *_name_checks("pipeline_type"),
)

pipeline = Table(
    "pipeline",
    metadata,
    _id(),
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
    _created_at(),
    _updated_at(),
    *_name_checks("pipeline"),
)

_COUNTS = ("inserts", "updates", "soft_deletes", "total_rows")

pipeline_execution = Table(
    "pipeline_execution",
    metadata,
    _id(),
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
    _created_at(),
    *(CheckConstraint(f"{name} is null or {name} >= 0", name=f"{name}_nonneg") for name in _COUNTS),
    CheckConstraint("end_date is null or end_date > start_date", name="end_after_start"),
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

timeliness_pipeline_execution_log = Table(
    "timeliness_pipeline_execution_log",
    metadata,
    _id(),
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
    _created_at(),
    CheckConstraint("execution_status in ('running', 'completed')", name="status_valid"),
    Index("ix_timeliness_pipeline_execution_log_pipeline_id", "pipeline_id"),
    Index("ix_timeliness_pipeline_execution_log_created_at", "created_at"),
)

freshness_pipeline_log = Table(
    "freshness_pipeline_log",
    metadata,
    _id(),
    Column(
        "pipeline_id", BigInteger, ForeignKey("pipeline.id", ondelete="CASCADE"), nullable=False
    ),
    Column("last_dml_timestamp", DateTime(timezone=True), nullable=False),
    Column("evaluation_timestamp", DateTime(timezone=True), nullable=False),
    Column("freshness_number", Integer, nullable=False),
    Column("freshness_datepart", Text, nullable=False),
    Column("used_child_config", Boolean, nullable=False),
    _created_at(),
    UniqueConstraint("pipeline_id", "last_dml_timestamp"),
    Index("ix_freshness_pipeline_log_created_at", "created_at"),
)

missed_run_log = Table(
    "missed_run_log",
    metadata,
    _id(),
    Column(
        "pipeline_id", BigInteger, ForeignKey("pipeline.id", ondelete="CASCADE"), nullable=False
    ),
    Column("expected_at", DateTime(timezone=True), nullable=False),
    Column("detected_at", DateTime(timezone=True), nullable=False),
    Column("schedule", Text, nullable=False),
    Column("schedule_timezone", Text, nullable=False),
    Column("grace_seconds", Integer, nullable=False),
    Column("used_child_config", Boolean, nullable=False),
    _created_at(),
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

# Watcher's own ingestion availability (watcher.availability): one row per replica and
# uninterrupted stretch of heartbeats. A replica upserts its row every few seconds; one that
# could not beat for longer than the tolerance (its process died, its database was away)
# starts a new row, so the holes between rows are the windows Watcher was blind in.
ingest_heartbeat = Table(
    "ingest_heartbeat",
    metadata,
    Column("replica", Text, primary_key=True),
    Column("segment_start", DateTime(timezone=True), primary_key=True),
    Column("beat_at", DateTime(timezone=True), nullable=False),
    Column("ingested", BigInteger, nullable=False),  # executions started/ended in the segment
    CheckConstraint("beat_at >= segment_start", name="beat_after_start"),
    CheckConstraint("ingested >= 0", name="ingested_non_negative"),
    Index("ix_ingest_heartbeat_beat_at", "beat_at"),
)

anomaly_detection_rule = Table(
    "anomaly_detection_rule",
    metadata,
    _id(),
    Column(
        "pipeline_id", BigInteger, ForeignKey("pipeline.id", ondelete="CASCADE"), nullable=False
    ),
    Column("metric_field", Text, nullable=False),
    Column("z_threshold", Double, nullable=False, server_default=text("3.0")),
    Column("lookback_days", Integer, nullable=False, server_default=text("30")),
    Column("minimum_executions", Integer, nullable=False, server_default=text("30")),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    _created_at(),
    _updated_at(),
    UniqueConstraint("pipeline_id", "metric_field"),
    CheckConstraint(f"metric_field in ({_METRIC_SQL})", name="metric_valid"),
    CheckConstraint("z_threshold between 1 and 10", name="z_threshold_range"),
    CheckConstraint("lookback_days between 1 and 365", name="lookback_range"),
    CheckConstraint("minimum_executions between 5 and 1000", name="minimum_range"),
)

anomaly_detection_result = Table(
    "anomaly_detection_result",
    metadata,
    _id(),
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

address_type = Table(
    "address_type",
    metadata,
    _id(),
    Column("name", Text, nullable=False, unique=True),
    Column("group_name", Text, nullable=False),
    _created_at(),
    _updated_at(),
    *_name_checks("address_type"),
)

address = Table(
    "address",
    metadata,
    _id(),
    Column("name", Text, nullable=False, unique=True),
    Column(
        "address_type_id",
        BigInteger,
        ForeignKey("address_type.id", ondelete="RESTRICT"),
        nullable=False,
        index=True,
    ),
    Column("database_name", Text),
    Column("schema_name", Text),
    Column("table_name", Text),
    Column("primary_key", Text),
    Column("address_metadata", JSONB),
    _created_at(),
    _updated_at(),
    *_name_checks("address"),
)

address_lineage = Table(
    "address_lineage",
    metadata,
    _id(),
    Column(
        "pipeline_id", BigInteger, ForeignKey("pipeline.id", ondelete="CASCADE"), nullable=False
    ),
    Column(
        "source_address_id",
        BigInteger,
        ForeignKey("address.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column(
        "target_address_id",
        BigInteger,
        ForeignKey("address.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    _created_at(),
    UniqueConstraint("pipeline_id", "source_address_id", "target_address_id"),
)

address_lineage_closure = Table(
    "address_lineage_closure",
    metadata,
    Column(
        "source_address_id",
        BigInteger,
        ForeignKey("address.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column(
        "target_address_id",
        BigInteger,
        ForeignKey("address.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("depth", Integer, nullable=False),
    CheckConstraint("depth >= 1", name="depth_positive"),
    Index("ix_address_lineage_closure_target_address_id", "target_address_id"),
)

# --- incidents (issue 15) -------------------------------------------------------------------

# Distinct (parent pipeline, child pipeline) pairs of nested executions: the nesting half of
# the pipeline graph, appended when an execution is first nested (ON CONFLICT DO NOTHING), so
# the graph never scans the execution history.
pipeline_nesting = Table(
    "pipeline_nesting",
    metadata,
    Column(
        "parent_pipeline_id",
        BigInteger,
        ForeignKey("pipeline.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column(
        "child_pipeline_id",
        BigInteger,
        ForeignKey("pipeline.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    _created_at(),
    CheckConstraint("parent_pipeline_id <> child_pipeline_id", name="not_self"),
    Index("ix_pipeline_nesting_child_pipeline_id", "child_pipeline_id"),
)

INCIDENT_PROBLEMS = ("failed", "missed", "overdue", "stale", "anomalous")
_PROBLEM_SQL = ", ".join(f"'{k}'" for k in INCIDENT_PROBLEMS)

# One incident per root cause; ids come from the engine's state (max + 1), never reused.
incident = Table(
    "incident",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column(
        "root_pipeline_id",
        BigInteger,
        ForeignKey("pipeline.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("resolved_at", DateTime(timezone=True)),
    Column("promoted_from_id", BigInteger, ForeignKey("incident.id", ondelete="SET NULL")),
    Column("acknowledged_by", Text),
    Column("acknowledged_at", DateTime(timezone=True)),
    CheckConstraint("resolved_at IS NULL OR resolved_at >= opened_at", name="resolved_after"),
    CheckConstraint(
        "(acknowledged_by IS NULL) = (acknowledged_at IS NULL)", name="acknowledged_pair"
    ),
    Index(
        "ux_incident_open_root",
        "root_pipeline_id",
        unique=True,
        postgresql_where=text("resolved_at IS NULL"),
    ),
    Index("ix_incident_opened_at", "opened_at"),
)

# A problem of an incident: depth 0 = the root's own problem, else impact at that many hops.
# Detached rows are the incident's history; an active problem is in one place only.
incident_impact = Table(
    "incident_impact",
    metadata,
    _id(),
    Column(
        "incident_id",
        BigInteger,
        ForeignKey("incident.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column(
        "pipeline_id", BigInteger, ForeignKey("pipeline.id", ondelete="CASCADE"), nullable=False
    ),
    Column("kind", Text, nullable=False),
    Column("depth", Integer, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("attached_at", DateTime(timezone=True), nullable=False),
    Column("also_upstream", ARRAY(BigInteger), nullable=False, server_default=text("'{}'")),
    Column("detail", Text, nullable=False, server_default=text("''")),
    Column("detached_at", DateTime(timezone=True)),
    Column("detach_reason", Text),
    CheckConstraint(f"kind IN ({_PROBLEM_SQL})", name="kind_known"),
    CheckConstraint("depth >= 0", name="depth_nonneg"),
    CheckConstraint(
        "detach_reason IS NULL OR detach_reason IN ('cleared', 'unlinked', 'root_resolved')",
        name="reason_known",
    ),
    CheckConstraint("(detached_at IS NULL) = (detach_reason IS NULL)", name="detached_pair"),
    Index(
        "ux_incident_impact_active",
        "pipeline_id",
        "kind",
        unique=True,
        postgresql_where=text("detached_at IS NULL"),
    ),
)

# Problems left broken by a resolved incident, waiting out the grace before promotion.
incident_pending = Table(
    "incident_pending",
    metadata,
    Column(
        "pipeline_id", BigInteger, ForeignKey("pipeline.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("kind", Text, primary_key=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column(
        "from_incident_id",
        BigInteger,
        ForeignKey("incident.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("depth", Integer, nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    CheckConstraint(f"kind IN ({_PROBLEM_SQL})", name="kind_known"),
)

api_token = Table(
    "api_token",
    metadata,
    _id(),
    Column("name", Text, nullable=False),
    # sha256 of the token; the token itself is shown once and never stored.
    Column("token_hash", Text, nullable=False, unique=True),
    Column("scopes", ARRAY(Text), nullable=False),
    Column("last_used_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    _created_at(),
)

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
    _updated_at(),
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
    _updated_at(),
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
    _created_at(),
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
    _id(),
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
    _created_at(),
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
    _id(),
    Column("pipeline_id", BigInteger, ForeignKey("pipeline.id", ondelete="CASCADE")),
    Column("pipeline_type_id", BigInteger, ForeignKey("pipeline_type.id", ondelete="CASCADE")),
    Column("start_date", DateTime(timezone=True), nullable=False),
    Column("end_date", DateTime(timezone=True), nullable=False),
    Column("reason", Text, nullable=False),
    _created_at(),
    CheckConstraint("end_date > start_date", name="ends_after_start"),
    CheckConstraint("pipeline_id IS NULL OR pipeline_type_id IS NULL", name="one_scope"),
    Index("ix_maintenance_window_end_date", "end_date"),
)
