"""pipeline_daily_report view for the long-range Grafana report

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 04:30:00

The daily pipeline report (executions, failures, error %, DML sums, average duration and
throughput per day, type and pipeline) outlives Prometheus' retention, so Grafana reads it
from PostgreSQL. A plain view is always fresh: a filter on `day` is pushed below the
GROUP BY onto `pipeline_execution.date_recorded` (the UTC start date), so a 30-day report
aggregates only those 30 days. Views are not compared by `alembic check`.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VIEW = """
CREATE VIEW pipeline_daily_report AS
SELECT e.date_recorded AS day,
       t.name AS pipeline_type,
       p.name AS pipeline,
       count(*) AS executions,
       count(*) FILTER (WHERE e.completed_successfully IS NULL) AS running,
       count(*) FILTER (WHERE e.completed_successfully) AS successes,
       count(*) FILTER (WHERE NOT e.completed_successfully) AS failures,
       round(
           100.0 * count(*) FILTER (WHERE NOT e.completed_successfully)
           / nullif(count(*) FILTER (WHERE e.completed_successfully IS NOT NULL), 0),
           2
       ) AS error_percent,
       coalesce(sum(e.inserts), 0) AS inserts,
       coalesce(sum(e.updates), 0) AS updates,
       coalesce(sum(e.soft_deletes), 0) AS soft_deletes,
       coalesce(sum(e.total_rows), 0) AS total_rows,
       avg(e.duration_seconds) AS avg_duration_seconds,
       avg(e.throughput) AS avg_throughput
FROM pipeline_execution AS e
JOIN pipeline AS p ON p.id = e.pipeline_id
JOIN pipeline_type AS t ON t.id = p.pipeline_type_id
GROUP BY e.date_recorded, t.name, p.name
"""


def upgrade() -> None:
    op.execute(VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS pipeline_daily_report")
