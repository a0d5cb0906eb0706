"""API tokens."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    DateTime,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import ARRAY

from watcher.db.schema.base import created_at, id_column, metadata

api_token = Table(
    "api_token",
    metadata,
    id_column(),
    Column("name", Text, nullable=False),
    # sha256 of the token; the token itself is shown once and never stored.
    Column("token_hash", Text, nullable=False, unique=True),
    Column("scopes", ARRAY(Text), nullable=False),
    Column("last_used_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    created_at(),
)
