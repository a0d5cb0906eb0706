"""Incidents (issue 15): the pipeline nesting graph, incidents, impacts, pending."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY

from watcher.db.schema.base import created_at, id_column, metadata

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
    created_at(),
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
    id_column(),
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
