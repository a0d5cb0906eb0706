"""Pipelines: create-or-get with watermark semantics, listing, reading, patching."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any, ClassVar

from pydantic import BaseModel
from sqlalchemy import bindparam, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request

from watcher import crud
from watcher.db.driver import Session, Statement, raw_autocommit, session
from watcher.db.engine import transaction
from watcher.db.schema import ANOMALY_METRICS, pipeline, pipeline_type
from watcher.errors import NotFound
from watcher.fields import Metadata, Name, RuleColumns, RuleFields, Watermark
from watcher.routing import Reply, Router, path_id
from watcher.services import services_of

router = Router("pipelines")

RULE_COLUMNS = tuple(RuleFields.model_fields)


class PipelineCreate(RuleFields):
    name: Name
    pipeline_type_name: Name
    next_watermark: Watermark = None
    pipeline_metadata: Metadata = None


class PipelinePatch(crud.ByIdOrName, RuleFields):
    merges_pairs: ClassVar[bool] = True  # one half of a rule pair merges with the stored other half
    pipeline_type_name: Name | None = None
    watermark: Watermark = None
    next_watermark: Watermark = None
    pipeline_metadata: Metadata = None
    active: bool | None = None
    load_lineage: bool | None = None


class PipelineStart(BaseModel):
    """POST /pipeline: what a run needs; `watermark` is the stored one it starts from."""

    id: int
    active: bool
    load_lineage: bool
    watermark: str | None


class Pipeline(RuleColumns):
    id: int
    name: str
    pipeline_type_id: int
    pipeline_type_name: str
    watermark: str | None
    next_watermark: str | None
    pipeline_metadata: dict[str, Any] | None
    last_target_insert: datetime | None
    last_target_update: datetime | None
    last_target_soft_delete: datetime | None
    load_lineage: bool
    active: bool
    created_at: datetime
    updated_at: datetime


def _sql_type(column: str) -> str:
    return str(pipeline.c[column].type.compile(dialect=postgresql.dialect()))  # type: ignore[no-untyped-call]


def upsert_sql(columns: list[str]) -> str:
    """One statement: make sure the type exists, insert the pipeline or update what changed.

    The update only happens when a given value differs (IS DISTINCT FROM, a stable comparison),
    so an unchanged pipeline is not rewritten on every run; in that case no row is returned and
    the caller reads the existing one. A new pipeline gets anomaly rules on the metrics in
    `:rule_metrics` (an empty array: none) in the same statement, so it is atomic on its own.
    """
    cols = ", ".join(columns)
    values = ", ".join(f"CAST(:{c} AS {_sql_type(c)})" for c in columns)
    sets = ", ".join(f"{c} = excluded.{c}" for c in columns)
    old = ", ".join(f"p.{c}" for c in ["pipeline_type_id", *columns])
    new = ", ".join(f"excluded.{c}" for c in ["pipeline_type_id", *columns])
    return f"""
    WITH existing_type AS (SELECT id FROM pipeline_type WHERE name = :type_name),
    new_type AS (
        INSERT INTO pipeline_type (name) SELECT :type_name
        WHERE NOT EXISTS (SELECT 1 FROM existing_type)
        ON CONFLICT (name) DO NOTHING RETURNING id
    ),
    t AS (SELECT id FROM existing_type UNION ALL SELECT id FROM new_type),
    up AS (
        INSERT INTO pipeline AS p (name, pipeline_type_id{", " + cols if cols else ""})
        SELECT :name, t.id{", " + values if values else ""} FROM t
        ON CONFLICT (name) DO UPDATE SET pipeline_type_id = excluded.pipeline_type_id,
            {sets + "," if sets else ""} updated_at = CAST(:now AS timestamptz)
        WHERE ({old}) IS DISTINCT FROM ({new})
        RETURNING p.id, p.active, p.load_lineage, p.watermark, (p.xmax = 0) AS created
    ),
    rules AS (
        INSERT INTO anomaly_detection_rule (pipeline_id, metric_field)
        SELECT up.id, m FROM up, unnest(CAST(:rule_metrics AS text[])) m WHERE up.created
        ON CONFLICT DO NOTHING
    )
    SELECT id, active, load_lineage, watermark, created FROM up
    """


@lru_cache(maxsize=256)
def upsert_statement(columns: tuple[str, ...]) -> Statement:
    """The upsert for one set of given columns, built once (the hot path's SQL is a constant)."""
    statement = text(upsert_sql(list(columns)))
    if "pipeline_metadata" in columns:
        statement = statement.bindparams(bindparam("pipeline_metadata", type_=JSONB))
    return Statement(statement)


EXISTING = Statement(
    text("SELECT id, active, load_lineage, watermark FROM pipeline WHERE name = :name")
)


async def create_or_get(
    conn: AsyncConnection | Session, body: PipelineCreate, now: Any, auto_rules: bool
) -> tuple[dict[str, Any], bool]:
    db = session(conn)
    given = sorted(body.model_fields_set - {"name", "pipeline_type_name"})
    params = {c: getattr(body, c) for c in given}
    statement = upsert_statement(tuple(given))
    params |= {"name": body.name, "type_name": body.pipeline_type_name, "now": now}
    params["rule_metrics"] = list(ANOMALY_METRICS) if auto_rules else []
    for _ in range(2):  # a second try covers a type created concurrently by another request
        row = await db.fetchrow(statement, params)
        if row is not None:
            result = dict(row)
            return result, bool(result.pop("created"))
        existing = await db.fetchrow(EXISTING, {"name": body.name})
        if existing is not None:
            return dict(existing), False
    raise RuntimeError("pipeline create-or-get did not converge")


_DETAIL = select(pipeline, pipeline_type.c.name.label("pipeline_type_name")).join(
    pipeline_type, pipeline_type.c.id == pipeline.c.pipeline_type_id
)


async def get(conn: AsyncConnection, pipeline_id: int) -> dict[str, Any]:
    row = (await conn.execute(_DETAIL.where(pipeline.c.id == pipeline_id))).first()
    if row is None:
        raise NotFound(f"pipeline {pipeline_id} not found")
    return crud.row_dict(row)


@router.post(
    "/pipeline", scope="ingest", body=PipelineCreate, response=PipelineStart, status_code=201
)
async def create_pipeline(request: Request, body: PipelineCreate) -> Reply:
    """Create a pipeline or get it by name, updating changed config; returns the watermark to start from."""
    services = services_of(request)
    auto = services.settings.auto_create_anomaly_detection_rules
    async with raw_autocommit(services.engine) as db:  # one statement (see upsert_sql)
        row, created = await create_or_get(db, body, services.clock.now(), auto)
    return Reply(row, 201 if created else 200)


@router.get("/pipeline", query=crud.Page, response=list[Pipeline])
async def list_pipelines(request: Request, query: crud.Page) -> list[dict[str, Any]]:
    """List pipelines (paged by limit/offset)."""
    statement = _DETAIL.order_by(pipeline.c.id).limit(query.limit).offset(query.offset)
    async with transaction(services_of(request).engine) as conn:
        return [crud.row_dict(r) for r in await conn.execute(statement)]


@router.get("/pipeline/{id:int}", response=Pipeline)
async def get_pipeline(request: Request) -> dict[str, Any]:
    """One pipeline with its type name."""
    async with transaction(services_of(request).engine) as conn:
        return await get(conn, path_id(request))


@router.patch("/pipeline", body=PipelinePatch, response=Pipeline)
async def patch_pipeline(request: Request, body: PipelinePatch) -> dict[str, Any]:
    """Update a pipeline found by id or name: watermarks, active, load_lineage, rules, metadata."""
    services = services_of(request)
    changes = body.changes()
    async with transaction(services.engine) as conn:
        type_name = changes.pop("pipeline_type_name", None)
        if type_name is not None:
            changes["pipeline_type_id"] = await crud.id_by_name(
                conn, pipeline_type, type_name, ["body", "pipeline_type_name"]
            )
        row = await crud.patch(conn, pipeline, body, changes, services.clock.now(), "pipeline")
        return await get(conn, row["id"])
