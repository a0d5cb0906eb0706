"""ingest heartbeat: Watcher records when it was ingesting

Revision ID: 0011
Revises: 0004
Create Date: 2026-12-03 17:50:00

Each replica upserts one row per uninterrupted stretch of heartbeats; the holes between the
rows are the windows no replica was ingesting in, and the checks treat evidence inside such
a window as unknown until a catch-up period after it (issue 16).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ingest_heartbeat",
        sa.Column("replica", sa.Text(), nullable=False),
        sa.Column("segment_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("beat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ingested", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "beat_at >= segment_start", name=op.f("ck_ingest_heartbeat_beat_after_start")
        ),
        sa.CheckConstraint("ingested >= 0", name=op.f("ck_ingest_heartbeat_ingested_non_negative")),
        sa.PrimaryKeyConstraint("replica", "segment_start", name=op.f("pk_ingest_heartbeat")),
    )
    op.create_index("ix_ingest_heartbeat_beat_at", "ingest_heartbeat", ["beat_at"])


def downgrade() -> None:
    op.drop_index("ix_ingest_heartbeat_beat_at", table_name="ingest_heartbeat")
    op.drop_table("ingest_heartbeat")
