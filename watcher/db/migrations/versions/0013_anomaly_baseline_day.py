"""anomaly baseline day summaries: evaluation cost independent of history

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 18:00:00

Each successful end was evaluated against a summary PostgreSQL aggregated over every run of
the same pipeline and UTC hour within the lookback: the cost of an end grew with the stored
history. `anomaly_baseline_day` keeps, per (pipeline, start hour, UTC day of the end), each
metric's count, mean, M2, min and max over the evaluated, unflagged successful executions
(watcher.checks.anomalies.baselines); evaluation merges at most lookback + 1 of these rows.
The existing history is summarised here, in one pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

METRICS = ("duration_seconds", "inserts", "updates", "soft_deletes", "total_rows", "throughput")
PARTS: tuple[tuple[str, sa.types.TypeEngine[Any]], ...] = (
    ("n", sa.BigInteger()),
    ("mean", sa.Double()),
    ("m2", sa.Double()),
    ("lo", sa.Double()),
    ("hi", sa.Double()),
)


def _aggregates(metric: str) -> str:
    value = f"CAST({metric} AS double precision)"
    where = (
        f"FILTER (WHERE {metric} IS NOT NULL"
        f" AND (anomaly_flags -> '{metric}') IS DISTINCT FROM 'true'::jsonb)"
    )
    return ", ".join(
        [
            f"count({value}) {where}",
            f"avg({value}) {where}",
            f"COALESCE(var_samp({value}) {where} * (count({value}) {where} - 1), 0)",
            f"min({value}) {where}",
            f"max({value}) {where}",
        ]
    )


def upgrade() -> None:
    op.create_table(
        "anomaly_baseline_day",
        sa.Column("pipeline_id", sa.BigInteger(), nullable=False),
        sa.Column("hour_recorded", sa.SmallInteger(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("max_end", sa.DateTime(timezone=True), nullable=True),
        *(
            sa.Column(f"{metric}_{part}", kind, nullable=part != "n")
            for metric in METRICS
            for part, kind in PARTS
        ),
        *(
            sa.CheckConstraint(
                f"{metric}_n >= 0", name=op.f(f"ck_anomaly_baseline_day_{metric}_n_nonneg")
            )
            for metric in METRICS
        ),
        sa.ForeignKeyConstraint(
            ["pipeline_id"],
            ["pipeline.id"],
            name=op.f("fk_anomaly_baseline_day_pipeline_id_pipeline"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "pipeline_id", "hour_recorded", "day", name=op.f("pk_anomaly_baseline_day")
        ),
    )
    columns = ", ".join(f"{m}_{p}" for m in METRICS for p, _ in PARTS)
    op.execute(
        f"""
        INSERT INTO anomaly_baseline_day (pipeline_id, hour_recorded, day, max_end, {columns})
        SELECT pipeline_id, hour_recorded, CAST(timezone('UTC', end_date) AS date),
               max(end_date), {", ".join(_aggregates(m) for m in METRICS)}
        FROM pipeline_execution
        WHERE completed_successfully AND anomaly_checked_at IS NOT NULL
        GROUP BY 1, 2, 3
        """
    )


def downgrade() -> None:
    op.drop_table("anomaly_baseline_day")
