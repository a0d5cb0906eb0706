"""pruned log counts: per-pipeline counters survive log cleanup

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 08:10:00

The metrics export per-pipeline violation and anomaly counters as counts of log rows. Log
cleanup deletes old rows, so those counters went down, which Prometheus reads as a reset:
`increase()` then counted every remaining row as new and the missed-run / violation alerts
fired after each cleanup. Cleanup now adds what it deletes to this table, in the same
statement, and the counters are rows logged + rows pruned.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pruned_log_count",
        sa.Column("pipeline_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("rows >= 0", name=op.f("ck_pruned_log_count_rows_non_negative")),
        sa.CheckConstraint(
            "kind IN ('timeliness', 'freshness', 'missed_run', 'anomaly')",
            name=op.f("ck_pruned_log_count_kind_known"),
        ),
        sa.ForeignKeyConstraint(
            ["pipeline_id"],
            ["pipeline.id"],
            name=op.f("fk_pruned_log_count_pipeline_id_pipeline"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pipeline_id", "kind", "label", name=op.f("pk_pruned_log_count")),
    )


def downgrade() -> None:
    op.drop_table("pruned_log_count")
