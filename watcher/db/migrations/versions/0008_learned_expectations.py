"""learned expectations: per-pipeline state and settings, per-type settings, feedback, findings

Revision ID: 0008
Revises: 0004
Create Date: 2026-12-03 17:30:00

Monitoring with zero rules (issue 14): the learn job keeps each pipeline's learned
expectations in `pipeline_expectation` (with the user's sensitivity, opt-out and "retrain
from"), per-type defaults in `pipeline_type_expectation`, the user's "this run is fine" /
"exclude this run" in `expectation_feedback`, and the learned check logs each finding once in
`learned_finding_log`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SENSITIVITY = "sensitivity is null or sensitivity in ('low', 'medium', 'high')"


def _updated_at() -> sa.Column[datetime]:
    return sa.Column(
        "updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "pipeline_expectation",
        sa.Column("pipeline_id", sa.BigInteger(), nullable=False),
        sa.Column("expectations", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("trained_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("learned_through", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sensitivity", sa.Text(), nullable=True),
        sa.Column("opted_out", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("retrain_from", sa.DateTime(timezone=True), nullable=True),
        _updated_at(),
        sa.CheckConstraint(_SENSITIVITY, name=op.f("ck_pipeline_expectation_sensitivity_valid")),
        sa.ForeignKeyConstraint(
            ["pipeline_id"],
            ["pipeline.id"],
            name=op.f("fk_pipeline_expectation_pipeline_id_pipeline"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pipeline_id", name=op.f("pk_pipeline_expectation")),
    )
    op.create_table(
        "pipeline_type_expectation",
        sa.Column("pipeline_type_id", sa.BigInteger(), nullable=False),
        sa.Column("sensitivity", sa.Text(), nullable=True),
        sa.Column("opted_out", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        _updated_at(),
        sa.CheckConstraint(
            _SENSITIVITY, name=op.f("ck_pipeline_type_expectation_sensitivity_valid")
        ),
        sa.ForeignKeyConstraint(
            ["pipeline_type_id"],
            ["pipeline_type.id"],
            name=op.f("fk_pipeline_type_expectation_pipeline_type_id_pipeline_type"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pipeline_type_id", name=op.f("pk_pipeline_type_expectation")),
    )
    op.create_table(
        "expectation_feedback",
        sa.Column("pipeline_execution_id", sa.BigInteger(), nullable=False),
        sa.Column("pipeline_id", sa.BigInteger(), nullable=False),
        sa.Column("verdict", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "verdict in ('fine', 'excluded')", name=op.f("ck_expectation_feedback_verdict_valid")
        ),
        sa.ForeignKeyConstraint(
            ["pipeline_execution_id"],
            ["pipeline_execution.id"],
            name=op.f("fk_expectation_feedback_pipeline_execution_id_pipeline_execution"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["pipeline_id"],
            ["pipeline.id"],
            name=op.f("fk_expectation_feedback_pipeline_id_pipeline"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pipeline_execution_id", name=op.f("pk_expectation_feedback")),
    )
    op.create_index(
        op.f("ix_expectation_feedback_pipeline_id"),
        "expectation_feedback",
        ["pipeline_id"],
        unique=False,
    )
    op.create_table(
        "learned_finding_log",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("pipeline_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("metric", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("subject", sa.DateTime(timezone=True), nullable=False),
        sa.Column("pipeline_execution_id", sa.BigInteger(), nullable=True),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expected", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "kind in ('late_start', 'overdue', 'stale', 'anomaly')",
            name=op.f("ck_learned_finding_log_kind_valid"),
        ),
        sa.ForeignKeyConstraint(
            ["pipeline_execution_id"],
            ["pipeline_execution.id"],
            name=op.f("fk_learned_finding_log_pipeline_execution_id_pipeline_execution"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["pipeline_id"],
            ["pipeline.id"],
            name=op.f("fk_learned_finding_log_pipeline_id_pipeline"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_learned_finding_log")),
        sa.UniqueConstraint(
            "pipeline_id",
            "kind",
            "metric",
            "subject",
            name=op.f("uq_learned_finding_log_pipeline_id_kind_metric_subject"),
        ),
    )
    op.create_index(
        op.f("ix_learned_finding_log_created_at"), "learned_finding_log", ["created_at"]
    )
    op.create_index(
        op.f("ix_learned_finding_log_pipeline_execution_id"),
        "learned_finding_log",
        ["pipeline_execution_id"],
    )


def downgrade() -> None:
    op.drop_table("learned_finding_log")
    op.drop_table("expectation_feedback")
    op.drop_table("pipeline_type_expectation")
    op.drop_table("pipeline_expectation")
