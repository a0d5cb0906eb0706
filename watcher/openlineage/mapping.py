"""The pure part of the OpenLineage mapping: job and dataset names → pipeline and address
names and specs, and facets → bounded metadata documents."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from watcher import addresses
from watcher.errors import Conflict
from watcher.fields import json_depth
from watcher.openlineage.events import (
    FACET_BYTES,
    FACET_DEPTH,
    FACETS_BYTES,
    GROUPS,
    NAME_LIMIT,
    Dataset,
    JobRef,
)

# --- names -----------------------------------------------------------------------------


def fit_name(value: str, fold: bool = True) -> str:
    """Trimmed and (unless `fold` is false) lowercased like every Watcher name; over 150
    characters, a prefix + hash."""
    name = value.strip().lower() if fold else value.strip()
    if len(name) <= NAME_LIMIT:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    return f"{name[: NAME_LIMIT - 17]}~{digest}"


def pipeline_name(job: JobRef) -> str:
    return fit_name(f"{job.namespace}.{job.name}")


def scheme(namespace: str) -> str:
    """`postgres://host:5432` → postgres; `bigquery` → bigquery."""
    return fit_name(namespace.split("://", 1)[0] if "://" in namespace else namespace)


def dataset_uri(namespace: str, name: str) -> str:
    if "://" in namespace:
        return f"{namespace.rstrip('/')}/{name.lstrip('/')}"
    return f"{namespace}://{name}"


# Databases whose unquoted identifiers are case-insensitive: their dataset names are folded
# to lower case. Every other namespace (object stores, file paths, URLs, topics, BigQuery,
# document stores) keeps the case it was sent in: `s3://b/Raw` and `s3://b/raw` differ.
CASE_INSENSITIVE = frozenset(
    "postgres postgresql mysql mariadb snowflake redshift trino presto mssql sqlserver oracle "
    "db2 teradata athena hive databricks vertica synapse azuresql sqlite duckdb".split()
)


def folds_case(kind: str) -> bool:
    return kind in CASE_INSENSITIVE


def table_parts(group: str, name: str) -> tuple[str | None, str | None, str | None]:
    """database.schema.table (or database.table) for database datasets."""
    parts = name.strip().split(".")
    if group != "database" or not all(parts) or any(len(p) > NAME_LIMIT for p in parts):
        return None, None, None
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    if len(parts) == 2:
        return parts[0], None, parts[1]
    return None, None, None


def address_spec(dataset: Dataset) -> addresses.AddressSpec:
    kind = scheme(dataset.namespace)
    group = GROUPS.get(kind, "other")
    fold = folds_case(kind)
    database, schema, table = table_parts(group, dataset.name.lower() if fold else dataset.name)
    # Constructed, not validated: AddressSpec lowercases names as the original HTTP API does.
    # No metadata: addresses.ensure would replace the stored facets with this event's (often
    # none); the callers merge `described(...)` into them instead, facet by facet.
    return addresses.AddressSpec.model_construct(
        name=fit_name(dataset_uri(dataset.namespace, dataset.name), fold),
        address_type_name=kind,
        address_type_group_name=group,
        database_name=database,
        schema_name=schema,
        table_name=table,
        primary_key=None,
        address_metadata=None,
    )


# --- metadata ----------------------------------------------------------------------------


def bounded(facets: dict[str, Any]) -> dict[str, Any]:
    """Facets small enough to keep: each at most 8 KiB of JSON, 32 KiB in all, and nested at
    most FACET_DEPTH levels (plans and logical plans Spark attaches would otherwise swamp the
    metadata columns, or nest deeper than metadata may). The event itself is still recorded."""
    kept: dict[str, Any] = {}
    total = 0
    for key, value in facets.items():
        if json_depth(value, FACET_DEPTH) > FACET_DEPTH:  # before dumps: it stops at 255
            continue
        size = len(orjson.dumps(value, default=str))
        if size <= FACET_BYTES and total + size <= FACETS_BYTES:
            kept[key] = value
            total += size
    return kept


def described(namespace: str, name: str, facets: dict[str, Any]) -> dict[str, Any]:
    return {"openlineage": {"namespace": namespace, "name": name, "facets": bounded(facets)}}


_MERGED = {"openlineage", "facets"}


def merge(current: dict[str, Any] | None, patch: dict[str, Any]) -> dict[str, Any]:
    """`patch` over `current`; the `openlineage` and `facets` objects merge key by key."""
    merged = dict(current or {})
    for key, value in patch.items():
        old = merged.get(key)
        if key in _MERGED and isinstance(old, dict) and isinstance(value, dict):
            merged[key] = merge(old, value)
        else:
            merged[key] = value
    return merged


_NULLABLE_JSONB = JSONB(none_as_null=True)


async def merge_metadata(
    conn: AsyncConnection, table: str, column: str, row_id: int, patch: dict[str, Any]
) -> None:
    """Merge `patch` into a JSONB column with a conditional UPDATE (retried when raced)."""
    read = text(f"SELECT {column} AS m FROM {table} WHERE id = :id")
    stamp = ", updated_at = now()" if table != "pipeline_execution" else ""
    write = text(
        f"UPDATE {table} SET {column} = :new{stamp} "
        f"WHERE id = :id AND {column} IS NOT DISTINCT FROM :old"
    ).bindparams(bindparam("new", type_=_NULLABLE_JSONB), bindparam("old", type_=_NULLABLE_JSONB))
    for _ in range(5):
        current = (await conn.execute(read, {"id": row_id})).scalar()
        merged = merge(current, patch)
        if merged == current:
            return
        result = await conn.execute(write, {"id": row_id, "new": merged, "old": current})
        if result.rowcount:
            return
    raise Conflict(f"{table} {row_id} metadata changed concurrently, retry")
