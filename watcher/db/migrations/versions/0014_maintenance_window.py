"""maintenance windows: declared per pipeline, per pipeline type or for every pipeline

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04 00:00:00

Learned expectations (issue 14): runs inside a declared maintenance window are left out of
learning, and the learned check finds nothing for the covered pipelines while it lasts.
Log cleanup now prunes learned findings too, so `pruned_log_count` gains the kind 'learned'.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KINDS = "'timeliness', 'freshness', 'missed_run', 'anomaly'"
_CHECK = "ck_pruned_log_count_kind_known"


def upgrade() -> None:
    op.drop_constraint(op.f(_CHECK), "pruned_log_count", type_="check")
    op.create_check_constraint(op.f(_CHECK), "pruned_log_count", f"kind IN ({_KINDS}, 'learned')")
    op.create_table(
        "maintenance_window",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("pipeline_id", sa.BigInteger(), nullable=True),
        sa.Column("pipeline_type_id", sa.BigInteger(), nullable=True),
        sa.Column("start_date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "end_date > start_date", name=op.f("ck_maintenance_window_ends_after_start")
        ),
        sa.CheckConstraint(
            "pipeline_id IS NULL OR pipeline_type_id IS NULL",
            name=op.f("ck_maintenance_window_one_scope"),
        ),
        sa.ForeignKeyConstraint(
            ["pipeline_id"],
            ["pipeline.id"],
            name=op.f("fk_maintenance_window_pipeline_id_pipeline"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["pipeline_type_id"],
            ["pipeline_type.id"],
            name=op.f("fk_maintenance_window_pipeline_type_id_pipeline_type"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_maintenance_window")),
    )
    op.create_index(
        "ix_maintenance_window_end_date", "maintenance_window", ["end_date"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_maintenance_window_end_date", table_name="maintenance_window")
    op.drop_table("maintenance_window")
    op.execute("DELETE FROM pruned_log_count WHERE kind = 'learned'")
    op.drop_constraint(op.f(_CHECK), "pruned_log_count", type_="check")
    op.create_check_constraint(op.f(_CHECK), "pruned_log_count", f"kind IN ({_KINDS})")
