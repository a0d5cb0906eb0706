"""anomaly result indexes for the metrics snapshot

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 08:20:00

The metrics snapshot reads, every few seconds, each rule's latest result and each rule's
number of anomalies. With only an index on rule_id, the first sorted every result of every
rule and the second read the whole table: past a few hundred thousand results the refresh
passed the statement timeout. (rule_id, detected_at, id) answers the first with one probe per
rule and still serves the foreign key; a partial index on the anomalous results answers the
second. Built CONCURRENTLY outside the migration's transaction, so an upgrade on a live
database does not block ingestion.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "anomaly_detection_result"


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_anomaly_detection_result_rule_latest",
            TABLE,
            ["rule_id", "detected_at", "id"],
            postgresql_concurrently=True,
            if_not_exists=True,
        )
        op.create_index(
            "ix_anomaly_detection_result_anomalies",
            TABLE,
            ["rule_id"],
            postgresql_where=sa.text("is_anomaly"),
            postgresql_concurrently=True,
            if_not_exists=True,
        )
        op.drop_index(
            "ix_anomaly_detection_result_rule_id",
            table_name=TABLE,
            postgresql_concurrently=True,
            if_exists=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_anomaly_detection_result_rule_id",
            TABLE,
            ["rule_id"],
            postgresql_concurrently=True,
            if_not_exists=True,
        )
        op.drop_index(
            "ix_anomaly_detection_result_anomalies",
            table_name=TABLE,
            postgresql_concurrently=True,
            if_exists=True,
        )
        op.drop_index(
            "ix_anomaly_detection_result_rule_latest",
            table_name=TABLE,
            postgresql_concurrently=True,
            if_exists=True,
        )
