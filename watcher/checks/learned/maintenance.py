"""Declared maintenance windows: the routes, and the windows the learn job and check load.

* ``POST /maintenance_window`` — declare one for a pipeline (``pipeline_id``), a pipeline
  type (``pipeline_type_id``) or every pipeline (neither), from ``start_date`` to
  ``end_date`` with a ``reason``;
* ``GET /maintenance_window`` (optionally the windows that apply to one ``pipeline_id``),
  ``GET /maintenance_window/{id}``, ``DELETE /maintenance_window/{id}``.

Declaring or deleting a window clears ``learned_through`` of the pipelines it covers, so the
next learn job relearns them with (or without) its runs. What a window does is in
watcher/expectations/maintenance.py; only learned expectations honour windows (a configured
rule is the user's own statement, silenced with its mute).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import ValidationInfo, field_validator
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request

from watcher import crud
from watcher.db.engine import transaction
from watcher.db.schema import maintenance_window
from watcher.errors import NotFound
from watcher.expectations.maintenance import Window
from watcher.fields import Body, Id, Row, Text, Timestamp
from watcher.routing import Reply, Router, path_id
from watcher.services import services_of

router = Router("expectations")


class WindowCreate(Body):
    """A maintenance window; with neither ``pipeline_id`` nor ``pipeline_type_id`` it covers
    every pipeline."""

    pipeline_id: Id | None = None
    pipeline_type_id: Id | None = None
    start_date: Timestamp
    end_date: Timestamp
    reason: Text

    @field_validator("pipeline_type_id")
    @classmethod
    def _one_scope(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("pipeline_id") is not None:
            raise ValueError("give pipeline_id or pipeline_type_id, not both")
        return value

    @field_validator("end_date")
    @classmethod
    def _after_start(cls, value: datetime, info: ValidationInfo) -> datetime:
        start = info.data.get("start_date")
        if start is not None and value <= start:
            raise ValueError("must be after start_date")
        return value

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value


class WindowQuery(crud.Page):
    pipeline_id: Id | None = None


class MaintenanceWindow(Row):
    id: int
    scope: Literal["pipeline", "pipeline_type", "global"]
    pipeline_id: int | None
    pipeline_type_id: int | None
    start_date: datetime
    end_date: datetime
    reason: str
    created_at: datetime


# The windows that apply to a pipeline: its own, its type's and the global ones.
APPLIES = """(w.pipeline_id = p.id OR w.pipeline_type_id = p.pipeline_type_id
    OR (w.pipeline_id IS NULL AND w.pipeline_type_id IS NULL))"""

WINDOWS_OF = text(f"""
SELECT p.id AS pipeline_id, extract(epoch FROM w.start_date) AS start,
       extract(epoch FROM w.end_date) AS end
FROM pipeline p JOIN maintenance_window w ON {APPLIES}
WHERE p.id = ANY(CAST(:ids AS bigint[])) AND w.end_date > :since AND w.start_date <= :now
""")

LIST = text(f"""
SELECT w.* FROM maintenance_window w
WHERE CAST(:pipeline_id AS bigint) IS NULL OR EXISTS (
    SELECT 1 FROM pipeline p WHERE p.id = :pipeline_id AND {APPLIES})
ORDER BY w.start_date DESC, w.id DESC LIMIT :limit OFFSET :offset
""")

# The pipelines a window covers relearn at the next learn job.
RELEARN = text(f"""
UPDATE pipeline_expectation x SET learned_through = NULL
FROM pipeline p, maintenance_window w
WHERE p.id = x.pipeline_id AND w.id = :id AND {APPLIES}
""")


async def windows_of(
    conn: AsyncConnection, ids: Sequence[int], since: datetime, now: datetime
) -> dict[int, tuple[Window, ...]]:
    """Per pipeline, the windows that apply to it and overlap ``(since, now]``."""
    out: dict[int, list[Window]] = defaultdict(list)
    if ids:
        params = {"ids": list(ids), "since": since, "now": now}
        for r in await conn.execute(WINDOWS_OF, params):
            out[int(r.pipeline_id)].append((float(r.start), float(r.end)))
    return {pid: tuple(sorted(ws)) for pid, ws in out.items()}


def _view(row: Any) -> dict[str, Any]:
    d = crud.row_dict(row)
    scope = "pipeline" if d["pipeline_id"] is not None else None
    scope = scope or ("pipeline_type" if d["pipeline_type_id"] is not None else "global")
    return d | {"scope": scope}


async def _exists(conn: AsyncConnection, table: str, field: str, value: int | None) -> None:
    if value is None:
        return
    found = await conn.execute(text(f"SELECT 1 FROM {table} WHERE id = :id"), {"id": value})
    if found.first() is None:
        what = table.replace("_", " ")
        raise NotFound(
            f"{what} {value} not found", [{"loc": ["body", field], "msg": f"no such {what}"}]
        )


@router.post(
    "/maintenance_window",
    scope="admin",
    body=WindowCreate,
    response=MaintenanceWindow,
    status_code=201,
)
async def create_window(request: Request, body: WindowCreate) -> Reply:
    """Declare a maintenance window: its runs are not learned from, nothing learned alerts."""
    async with transaction(services_of(request).engine) as conn:
        await _exists(conn, "pipeline", "pipeline_id", body.pipeline_id)
        await _exists(conn, "pipeline_type", "pipeline_type_id", body.pipeline_type_id)
        statement = maintenance_window.insert().values(**body.model_dump())
        row = (await conn.execute(statement.returning(maintenance_window))).one()
        await conn.execute(RELEARN, {"id": row.id})
    return Reply(_view(row), 201)


@router.get("/maintenance_window", query=WindowQuery, response=list[MaintenanceWindow])
async def list_windows(request: Request, query: WindowQuery) -> list[dict[str, Any]]:
    """Maintenance windows, latest first; with pipeline_id, those that apply to it."""
    params = query.model_dump()
    async with transaction(services_of(request).engine) as conn:
        return [_view(r) for r in await conn.execute(LIST, params)]


async def _window(conn: AsyncConnection, window_id: int) -> Any:
    table = maintenance_window
    row = (await conn.execute(table.select().where(table.c.id == window_id))).first()
    if row is None:
        raise NotFound(f"maintenance window {window_id} not found")
    return row


@router.get("/maintenance_window/{id:int}", response=MaintenanceWindow)
async def get_window(request: Request) -> dict[str, Any]:
    """One maintenance window."""
    async with transaction(services_of(request).engine) as conn:
        return _view(await _window(conn, path_id(request)))


@router.delete("/maintenance_window/{id:int}", scope="admin", status_code=204)
async def delete_window(request: Request) -> None:
    """Delete a maintenance window: its pipelines relearn with its runs again."""
    window_id = path_id(request)
    async with transaction(services_of(request).engine) as conn:
        await _window(conn, window_id)
        await conn.execute(RELEARN, {"id": window_id})
        await conn.execute(maintenance_window.delete().where(maintenance_window.c.id == window_id))
