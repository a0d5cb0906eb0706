"""Pipeline types: the parent level of freshness/timeliness rules, mutes and schedules."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from pydantic import Field
from starlette.requests import Request

from watcher import crud
from watcher.db.engine import transaction
from watcher.db.schema import pipeline_type
from watcher.fields import Name, RuleColumns, RuleFields
from watcher.routing import Reply, Router, path_id
from watcher.services import services_of

router = Router("pipeline types")


class PipelineTypeCreate(RuleFields):
    name: Name
    group_name: str | None = Field(default=None, max_length=150)


class PipelineTypePatch(crud.ByIdOrName, RuleFields):
    merges_pairs: ClassVar[bool] = True  # one half of a rule pair merges with the stored other half
    group_name: str | None = Field(default=None, max_length=150)


class PipelineType(RuleColumns):
    id: int
    name: str
    group_name: str | None
    created_at: datetime
    updated_at: datetime


def _values(body: RuleFields) -> dict[str, Any]:
    return {k: getattr(body, k) for k in body.model_fields_set}


@router.post(
    "/pipeline_type",
    scope="ingest",
    body=PipelineTypeCreate,
    response=PipelineType,
    status_code=201,
)
async def create_pipeline_type(request: Request, body: PipelineTypeCreate) -> Reply:
    """Create a pipeline type, or return the existing one of that name (200)."""
    async with transaction(services_of(request).engine) as conn:
        row, created = await crud.create_or_get(
            conn, pipeline_type, _values(body) | {"name": body.name}
        )
    return Reply(row, 201 if created else 200)


@router.get("/pipeline_type", query=crud.Page, response=list[PipelineType])
async def list_pipeline_types(request: Request, query: crud.Page) -> list[dict[str, Any]]:
    """List pipeline types (paged by limit/offset)."""
    async with transaction(services_of(request).engine) as conn:
        return await crud.list_rows(conn, pipeline_type, query)


@router.get("/pipeline_type/{id:int}", response=PipelineType)
async def get_pipeline_type(request: Request) -> dict[str, Any]:
    """One pipeline type."""
    async with transaction(services_of(request).engine) as conn:
        return await crud.get_by_id(conn, pipeline_type, path_id(request), "pipeline type")


@router.patch("/pipeline_type", body=PipelineTypePatch, response=PipelineType)
async def patch_pipeline_type(request: Request, body: PipelineTypePatch) -> dict[str, Any]:
    """Update a pipeline type's rules, mutes or schedule, found by id or name."""
    services = services_of(request)
    async with transaction(services.engine) as conn:
        return await crud.patch(
            conn, pipeline_type, body, body.changes(), services.clock.now(), "pipeline type"
        )
