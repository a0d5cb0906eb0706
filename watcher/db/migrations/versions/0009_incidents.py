"""incidents: pipeline nesting pairs, incidents, their impact and pending orphans (issue 15)

Revision ID: 0009
Revises: 0004
Create Date: 2026-12-03 17:40:00

`pipeline_nesting` is backfilled from the executions already nested (the only scan of the
execution history; afterwards each new pair is appended when it is first seen).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KINDS = "'failed', 'missed', 'overdue', 'stale', 'anomalous'"


def _ts(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _pipeline_fk(table: str, column: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], ["pipeline.id"], name=op.f(f"fk_{table}_{column}_pipeline"), ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "pipeline_nesting",
        sa.Column("parent_pipeline_id", sa.BigInteger(), nullable=False),
        sa.Column("child_pipeline_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "parent_pipeline_id <> child_pipeline_id", name=op.f("ck_pipeline_nesting_not_self")
        ),
        _pipeline_fk("pipeline_nesting", "parent_pipeline_id"),
        _pipeline_fk("pipeline_nesting", "child_pipeline_id"),
        sa.PrimaryKeyConstraint(
            "parent_pipeline_id", "child_pipeline_id", name=op.f("pk_pipeline_nesting")
        ),
    )
    op.create_index(
        "ix_pipeline_nesting_child_pipeline_id", "pipeline_nesting", ["child_pipeline_id"]
    )
    op.execute(
        "INSERT INTO pipeline_nesting (parent_pipeline_id, child_pipeline_id) "
        "SELECT DISTINCT p.pipeline_id, c.pipeline_id FROM pipeline_execution c "
        "JOIN pipeline_execution p ON p.id = c.parent_id WHERE p.pipeline_id <> c.pipeline_id"
    )
    op.create_table(
        "incident",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("root_pipeline_id", sa.BigInteger(), nullable=False),
        _ts("started_at"),
        _ts("opened_at"),
        _ts("resolved_at", nullable=True),
        sa.Column("promoted_from_id", sa.BigInteger(), nullable=True),
        sa.Column("acknowledged_by", sa.Text(), nullable=True),
        _ts("acknowledged_at", nullable=True),
        sa.CheckConstraint(
            "resolved_at IS NULL OR resolved_at >= opened_at",
            name=op.f("ck_incident_resolved_after"),
        ),
        sa.CheckConstraint(
            "(acknowledged_by IS NULL) = (acknowledged_at IS NULL)",
            name=op.f("ck_incident_acknowledged_pair"),
        ),
        _pipeline_fk("incident", "root_pipeline_id"),
        sa.ForeignKeyConstraint(
            ["promoted_from_id"],
            ["incident.id"],
            name=op.f("fk_incident_promoted_from_id_incident"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident")),
    )
    op.create_index(
        "ux_incident_open_root",
        "incident",
        ["root_pipeline_id"],
        unique=True,
        postgresql_where=sa.text("resolved_at IS NULL"),
    )
    op.create_index("ix_incident_opened_at", "incident", ["opened_at"])
    op.create_table(
        "incident_impact",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("incident_id", sa.BigInteger(), nullable=False),
        sa.Column("pipeline_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("depth", sa.Integer(), nullable=False),
        _ts("started_at"),
        _ts("attached_at"),
        sa.Column(
            "also_upstream",
            postgresql.ARRAY(sa.BigInteger()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("detail", sa.Text(), server_default=sa.text("''"), nullable=False),
        _ts("detached_at", nullable=True),
        sa.Column("detach_reason", sa.Text(), nullable=True),
        sa.CheckConstraint(f"kind IN ({_KINDS})", name=op.f("ck_incident_impact_kind_known")),
        sa.CheckConstraint("depth >= 0", name=op.f("ck_incident_impact_depth_nonneg")),
        sa.CheckConstraint(
            "detach_reason IS NULL OR detach_reason IN ('cleared', 'unlinked', 'root_resolved')",
            name=op.f("ck_incident_impact_reason_known"),
        ),
        sa.CheckConstraint(
            "(detached_at IS NULL) = (detach_reason IS NULL)",
            name=op.f("ck_incident_impact_detached_pair"),
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incident.id"],
            name=op.f("fk_incident_impact_incident_id_incident"),
            ondelete="CASCADE",
        ),
        _pipeline_fk("incident_impact", "pipeline_id"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_impact")),
    )
    op.create_index("ix_incident_impact_incident_id", "incident_impact", ["incident_id"])
    op.create_index(
        "ux_incident_impact_active",
        "incident_impact",
        ["pipeline_id", "kind"],
        unique=True,
        postgresql_where=sa.text("detached_at IS NULL"),
    )
    op.create_table(
        "incident_pending",
        sa.Column("pipeline_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        _ts("started_at"),
        sa.Column("from_incident_id", sa.BigInteger(), nullable=False),
        sa.Column("depth", sa.Integer(), nullable=False),
        _ts("due_at"),
        sa.CheckConstraint(f"kind IN ({_KINDS})", name=op.f("ck_incident_pending_kind_known")),
        _pipeline_fk("incident_pending", "pipeline_id"),
        sa.ForeignKeyConstraint(
            ["from_incident_id"],
            ["incident.id"],
            name=op.f("fk_incident_pending_from_incident_id_incident"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pipeline_id", "kind", name=op.f("pk_incident_pending")),
    )


def downgrade() -> None:
    op.drop_table("incident_pending")
    op.drop_table("incident_impact")
    op.drop_table("incident")
    op.drop_table("pipeline_nesting")
