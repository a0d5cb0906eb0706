"""Watcher's own ingestion availability: the replicas' heartbeats."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    Table,
    Text,
)

from watcher.db.schema.base import metadata

# Watcher's own ingestion availability (watcher.availability): one row per replica and
# uninterrupted stretch of heartbeats. A replica upserts its row every few seconds; one that
# could not beat for longer than the tolerance (its process died, its database was away)
# starts a new row, so the holes between rows are the windows Watcher was blind in.
ingest_heartbeat = Table(
    "ingest_heartbeat",
    metadata,
    Column("replica", Text, primary_key=True),
    Column("segment_start", DateTime(timezone=True), primary_key=True),
    Column("beat_at", DateTime(timezone=True), nullable=False),
    Column("ingested", BigInteger, nullable=False),  # executions started/ended in the segment
    CheckConstraint("beat_at >= segment_start", name="beat_after_start"),
    CheckConstraint("ingested >= 0", name="ingested_non_negative"),
    Index("ix_ingest_heartbeat_beat_at", "beat_at"),
)
