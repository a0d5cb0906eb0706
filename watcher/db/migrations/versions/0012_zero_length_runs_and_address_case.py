"""zero-length runs and case-preserving address names

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 17:45:00

OpenLineage emitters send START and COMPLETE/ABORT with the same eventTime (dbt-ol's skipped
nodes, Airflow's per-statement jobs): an execution may end at its start (zero duration).
Dataset names of case-sensitive namespaces (s3://, gs://, file paths, URLs) keep their case:
address names are trimmed but no longer lowercased (the original HTTP API still lowercases
the names it is sent).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

END = "ck_pipeline_execution_end_after_start"
NAME = "ck_address_name_normalised"


def upgrade() -> None:
    op.drop_constraint(op.f(END), "pipeline_execution", type_="check")
    op.create_check_constraint(
        op.f(END), "pipeline_execution", "end_date is null or end_date >= start_date"
    )
    op.drop_constraint(op.f(NAME), "address", type_="check")
    op.create_check_constraint(op.f(NAME), "address", "name = btrim(name)")


def downgrade() -> None:
    # NOT VALID: rows written under this revision (zero-length runs, mixed-case addresses)
    # stay; only new rows are held to the older rules.
    op.drop_constraint(op.f(NAME), "address", type_="check")
    op.execute(
        f"ALTER TABLE address ADD CONSTRAINT {NAME} CHECK (name = lower(btrim(name))) NOT VALID"
    )
    op.drop_constraint(op.f(END), "pipeline_execution", type_="check")
    op.execute(
        f"ALTER TABLE pipeline_execution ADD CONSTRAINT {END}"
        " CHECK (end_date is null or end_date > start_date) NOT VALID"
    )
