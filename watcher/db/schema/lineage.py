"""Address types, addresses, lineage edges and the lineage closure."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB

from watcher.db.schema.base import created_at, id_column, metadata, name_checks, updated_at

address_type = Table(
    "address_type",
    metadata,
    id_column(),
    Column("name", Text, nullable=False, unique=True),
    Column("group_name", Text, nullable=False),
    created_at(),
    updated_at(),
    *name_checks("address_type"),
)

address = Table(
    "address",
    metadata,
    id_column(),
    Column("name", Text, nullable=False, unique=True),
    Column(
        "address_type_id",
        BigInteger,
        ForeignKey("address_type.id", ondelete="RESTRICT"),
        nullable=False,
        index=True,
    ),
    Column("database_name", Text),
    Column("schema_name", Text),
    Column("table_name", Text),
    Column("primary_key", Text),
    Column("address_metadata", JSONB),
    created_at(),
    updated_at(),
    *name_checks("address", folded=False),
)

address_lineage = Table(
    "address_lineage",
    metadata,
    id_column(),
    Column(
        "pipeline_id", BigInteger, ForeignKey("pipeline.id", ondelete="CASCADE"), nullable=False
    ),
    Column(
        "source_address_id",
        BigInteger,
        ForeignKey("address.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column(
        "target_address_id",
        BigInteger,
        ForeignKey("address.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    created_at(),
    UniqueConstraint("pipeline_id", "source_address_id", "target_address_id"),
)

address_lineage_closure = Table(
    "address_lineage_closure",
    metadata,
    Column(
        "source_address_id",
        BigInteger,
        ForeignKey("address.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column(
        "target_address_id",
        BigInteger,
        ForeignKey("address.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("depth", Integer, nullable=False),
    CheckConstraint("depth >= 1", name="depth_positive"),
    Index("ix_address_lineage_closure_target_address_id", "target_address_id"),
)
