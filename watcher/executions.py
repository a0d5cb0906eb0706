"""Pipeline executions: start (nested, idempotent by run_id), end (watermark, DML, one
transaction), read with children, list."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, Field, model_validator
from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request

from watcher import crud
from watcher import execution_views as views
from watcher.db.driver import ConstraintViolated, Session, Statement, raw_autocommit, session
from watcher.db.engine import transaction
from watcher.errors import Conflict, InvalidInput, NotFound
from watcher.events import ExecutionEnded, ExecutionStarted
from watcher.fields import Body, Count, Id, Metadata, Name, Row, Timestamp, Watermark
from watcher.routing import Reply, Router, path_id
from watcher.services import services_of

router = Router("executions")


class StartExecution(Body):
    pipeline_id: Id | None = None
    pipeline_name: Name | None = None
    start_date: Timestamp | None = None
    parent_id: Id | None = None
    watermark: Watermark = None
    next_watermark: Watermark = None
    run_id: str | None = Field(default=None, min_length=1, max_length=200)

    @model_validator(mode="after")
    def _one_pipeline(self) -> StartExecution:
        if (self.pipeline_id is None) == (self.pipeline_name is None):
            raise ValueError("give exactly one of pipeline_id or pipeline_name")
        return self


class EndExecution(Body):
    id: Id
    end_date: Timestamp | None = None
    completed_successfully: bool
    inserts: Count | None = None
    updates: Count | None = None
    soft_deletes: Count | None = None
    total_rows: Count | None = None
    execution_metadata: Metadata = None


class ExecutionQuery(crud.Page):
    pipeline_id: Id | None = None
    status: str | None = Field(default=None, pattern="^(running|succeeded|failed)$")
    since: Timestamp | None = None


class StartedExecution(BaseModel):
    id: int


class Execution(Row):
    id: int
    parent_id: int | None
    pipeline_id: int
    pipeline_name: str
    start_date: datetime
    end_date: datetime | None
    duration_seconds: int | None
    completed_successfully: bool | None
    inserts: int | None
    updates: int | None
    soft_deletes: int | None
    total_rows: int | None
    throughput: float | None
    watermark: str | None
    next_watermark: str | None
    execution_metadata: dict[str, Any] | None
    anomaly_flags: dict[str, Any] | None
    hour_recorded: int
    date_recorded: date
    run_id: str | None
    anomaly_checked_at: datetime | None
    created_at: datetime


class ChildExecution(Row):
    id: int
    pipeline_id: int
    start_date: datetime
    end_date: datetime | None
    completed_successfully: bool | None
    duration_seconds: int | None
    inserts: int | None
    updates: int | None
    soft_deletes: int | None
    total_rows: int | None


class ExecutionDetail(Execution):
    children: list[ChildExecution]
    child_executions: list[views.OriginalChildExecution]


START_SQL = """
WITH p AS (SELECT id, name, pipeline_type_id, watermark, next_watermark FROM pipeline
           WHERE {pipeline_filter}),
e AS (
    INSERT INTO pipeline_execution (pipeline_id, parent_id, start_date, watermark,
        next_watermark, hour_recorded, date_recorded, run_id)
    SELECT p.id, CAST(:parent_id AS bigint), CAST(:start_date AS timestamptz),
        COALESCE(CAST(:watermark AS text), p.watermark),
        COALESCE(CAST(:next_watermark AS text), p.next_watermark),
        CAST(:hour AS smallint), CAST(:day AS date), CAST(:run_id AS text)
    FROM p
    ON CONFLICT (run_id) DO NOTHING
    RETURNING id, parent_id, pipeline_id
),
c AS (
    INSERT INTO pipeline_execution_closure (ancestor_id, descendant_id, depth)
    SELECT id, id, 0 FROM e
    UNION ALL
    SELECT pc.ancestor_id, e.id, pc.depth + 1
    FROM e JOIN pipeline_execution_closure pc ON pc.descendant_id = e.parent_id
),
n AS (  -- the pipeline graph's nesting pair, recorded the first time it is seen
    INSERT INTO pipeline_nesting (parent_pipeline_id, child_pipeline_id)
    SELECT pe.pipeline_id, e.pipeline_id
    FROM e JOIN pipeline_execution pe ON pe.id = e.parent_id
    WHERE pe.pipeline_id <> e.pipeline_id
    ON CONFLICT DO NOTHING
)
SELECT e.id, p.id AS pipeline_id, p.name AS pipeline, t.name AS pipeline_type
FROM e JOIN p ON p.id = e.pipeline_id JOIN pipeline_type t ON t.id = p.pipeline_type_id
"""

START_BY_ID = Statement(text(START_SQL.format(pipeline_filter="id = CAST(:pipeline_id AS bigint)")))
START_BY_NAME = Statement(
    text(START_SQL.format(pipeline_filter="name = CAST(:pipeline_name AS text)"))
)
BY_RUN_ID = Statement(text("SELECT id, pipeline_id FROM pipeline_execution WHERE run_id = :r"))
PIPELINE_NAME = Statement(text("SELECT name FROM pipeline WHERE id = :i"))


async def start(
    conn: AsyncConnection | Session, body: StartExecution, now: datetime
) -> tuple[dict[str, Any], bool]:
    """Insert the execution and its closure rows. (row, created); a known run_id is not created."""
    db = session(conn)
    start_date = body.start_date or now
    params = body.model_dump(
        include={
            "pipeline_id",
            "pipeline_name",
            "parent_id",
            "watermark",
            "next_watermark",
            "run_id",
        }
    )
    params |= {"start_date": start_date, "hour": start_date.hour, "day": start_date.date()}
    statement = START_BY_ID if body.pipeline_id is not None else START_BY_NAME
    try:
        row = await db.fetchrow(statement, params)
    except ConstraintViolated as error:
        if (error.constraint or "").startswith("fk_pipeline_execution_parent_id"):
            raise NotFound(
                f"parent execution {body.parent_id} not found",
                [{"loc": ["body", "parent_id"], "msg": "no such execution"}],
            ) from None
        raise
    if row is not None:
        return dict(row), True
    if body.run_id is not None:
        existing = await db.fetchrow(BY_RUN_ID, {"r": body.run_id})
        if existing is not None:
            await _check_same_pipeline(db, body, existing["pipeline_id"])
            return {"id": existing["id"], "pipeline_id": existing["pipeline_id"]}, False
    key = body.pipeline_id if body.pipeline_id is not None else repr(body.pipeline_name)
    raise NotFound(
        f"pipeline {key} not found",
        [
            {
                "loc": ["body", "pipeline_id" if body.pipeline_id else "pipeline_name"],
                "msg": "no such pipeline",
            }
        ],
    )


async def _check_same_pipeline(db: Session, body: StartExecution, pipeline_id: int) -> None:
    if body.pipeline_id is not None:
        same = body.pipeline_id == pipeline_id
    else:
        row = await db.fetchrow(PIPELINE_NAME, {"i": pipeline_id})
        same = row is not None and row["name"] == body.pipeline_name
    if not same:
        raise Conflict("run_id already used by an execution of another pipeline")


END_SQL = Statement(
    text("""
WITH e AS (
    UPDATE pipeline_execution x SET
        end_date = CAST(:end_date AS timestamptz),
        completed_successfully = CAST(:ok AS boolean),
        inserts = CAST(:inserts AS bigint),
        updates = CAST(:updates AS bigint),
        soft_deletes = CAST(:soft_deletes AS bigint),
        total_rows = CAST(:total_rows AS bigint),
        execution_metadata = COALESCE(CAST(:execution_metadata AS jsonb), x.execution_metadata),
        duration_seconds = extract(epoch FROM (CAST(:end_date AS timestamptz) - x.start_date)),
        throughput = CAST(:total_rows AS bigint)
            / NULLIF(extract(epoch FROM (CAST(:end_date AS timestamptz) - x.start_date)), 0)
    WHERE x.id = CAST(:id AS bigint) AND x.end_date IS NULL
      AND x.start_date <= CAST(:end_date AS timestamptz)
    RETURNING x.id, x.pipeline_id, x.next_watermark, x.duration_seconds, x.throughput
),
p AS (
    UPDATE pipeline SET
        watermark = COALESCE(e.next_watermark, pipeline.next_watermark, pipeline.watermark),
        last_target_insert = CASE WHEN CAST(:inserts AS bigint) > 0
            THEN GREATEST(pipeline.last_target_insert, CAST(:end_date AS timestamptz))
            ELSE pipeline.last_target_insert END,
        last_target_update = CASE WHEN CAST(:updates AS bigint) > 0
            THEN GREATEST(pipeline.last_target_update, CAST(:end_date AS timestamptz))
            ELSE pipeline.last_target_update END,
        last_target_soft_delete = CASE WHEN CAST(:soft_deletes AS bigint) > 0
            THEN GREATEST(pipeline.last_target_soft_delete, CAST(:end_date AS timestamptz))
            ELSE pipeline.last_target_soft_delete END,
        load_lineage = false,
        updated_at = CAST(:now AS timestamptz)
    FROM e WHERE pipeline.id = e.pipeline_id AND CAST(:ok AS boolean)
    RETURNING pipeline.id
)
SELECT e.id, e.pipeline_id, e.duration_seconds, e.throughput,
       pl.name AS pipeline, t.name AS pipeline_type
FROM e JOIN pipeline pl ON pl.id = e.pipeline_id
JOIN pipeline_type t ON t.id = pl.pipeline_type_id
""").bindparams(bindparam("execution_metadata", type_=JSONB(none_as_null=True)))
)
CURRENT = Statement(text("SELECT * FROM pipeline_execution WHERE id = :id"))

_COMPARED = ("completed_successfully", "inserts", "updates", "soft_deletes", "total_rows")


async def end(
    conn: AsyncConnection | Session, body: EndExecution, now: datetime
) -> dict[str, Any] | None:
    """End a running execution and, on success, advance the pipeline in the same statement.

    Returns the ended row, or None for an idempotent retry (already ended with these values).
    """
    db = session(conn)
    end_date = body.end_date or now
    params = body.model_dump(exclude={"completed_successfully", "end_date"})
    params |= {"ok": body.completed_successfully, "end_date": end_date, "now": now}
    row = await db.fetchrow(END_SQL, params)
    if row is not None:
        return dict(row)
    current = await db.fetchrow(CURRENT, {"id": body.id})
    if current is None:
        raise NotFound(
            f"execution {body.id} not found", [{"loc": ["body", "id"], "msg": "no such execution"}]
        )
    if current["end_date"] is None:
        raise InvalidInput.field(
            ["body", "end_date"],
            f"must not be before the start_date {current['start_date'].isoformat()}",
        )
    given = {
        k: getattr(body, k)
        for k in _COMPARED
        if k in body.model_fields_set or k == "completed_successfully"
    }
    if body.end_date is not None:
        given["end_date"] = body.end_date
    differs = [k for k, v in given.items() if current[k] != v]
    if differs:
        raise Conflict(f"execution {body.id} already ended with different {', '.join(differs)}")
    return None


@router.post(
    "/start_pipeline_execution",
    scope="ingest",
    body=StartExecution,
    response=StartedExecution,
    status_code=201,
)
async def start_execution(request: Request, body: StartExecution) -> Reply:
    """Start an execution (nested with parent_id); a repeated run_id returns the same id (200)."""
    services = services_of(request)
    async with raw_autocommit(services.engine) as db:  # START_SQL: one statement
        row, created = await start(db, body, services.clock.now())
    if created:
        services.events.emit(
            ExecutionStarted(
                row["id"],
                row["pipeline_id"],
                row["pipeline"],
                row["pipeline_type"],
                body.start_date or services.clock.now(),
            )
        )
    return Reply({"id": row["id"]}, 201 if created else 200)


@router.post("/end_pipeline_execution", scope="ingest", body=EndExecution, status_code=204)
async def end_execution(request: Request, body: EndExecution) -> None:
    """End an execution; on success advance the watermark and last DML times (one transaction)."""
    services = services_of(request)
    async with raw_autocommit(services.engine) as db:  # END_SQL: one statement
        row = await end(db, body, services.clock.now())
    if row is not None:
        services.events.emit(ended_event(row, body, body.end_date or services.clock.now()))


def ended_event(row: dict[str, Any], body: EndExecution, end_date: datetime) -> ExecutionEnded:
    """The event announcing an ended execution, from END_SQL's row and the request body."""
    return ExecutionEnded(
        execution_id=row["id"],
        pipeline_id=row["pipeline_id"],
        pipeline=row["pipeline"],
        pipeline_type=row["pipeline_type"],
        success=body.completed_successfully,
        end_date=end_date,
        duration_seconds=row["duration_seconds"],
        inserts=body.inserts,
        updates=body.updates,
        soft_deletes=body.soft_deletes,
        total_rows=body.total_rows,
        throughput=row["throughput"],
    )


CHILD_ITEM = tuple(ChildExecution.model_fields)

GET_SQL = text(f"""
SELECT e.*, p.name AS pipeline_name,
    COALESCE((SELECT json_agg(c ORDER BY c.start_date, c.id) FROM (
        SELECT {", ".join(dict.fromkeys(views.ORIGINAL_ITEM + CHILD_ITEM))}
        FROM pipeline_execution WHERE parent_id = e.id) c), '[]'::json) AS children
FROM pipeline_execution e JOIN pipeline p ON p.id = e.pipeline_id
WHERE e.id = :id
""")


@router.get("/pipeline_execution/{id:int}", response=ExecutionDetail)
async def get_execution(request: Request) -> dict[str, Any]:
    """One execution with its direct child executions (`child_executions` and `children`)."""
    execution_id = path_id(request)
    async with transaction(services_of(request).engine) as conn:
        row = (await conn.execute(GET_SQL, {"id": execution_id})).first()
    if row is None:
        raise NotFound(f"execution {execution_id} not found")
    return views.detail(crud.row_dict(row), CHILD_ITEM)


_STATUS = {
    "running": "e.end_date IS NULL",
    "succeeded": "e.completed_successfully",
    "failed": "NOT e.completed_successfully",
}


@router.get("/pipeline_execution", query=ExecutionQuery, response=list[Execution])
async def list_executions(request: Request, query: ExecutionQuery) -> list[dict[str, Any]]:
    """Executions, newest first; filter by pipeline_id, status (running/succeeded/failed), since."""
    where = ["true"]
    if query.pipeline_id is not None:
        where.append("e.pipeline_id = :pipeline_id")
    if query.status is not None:
        where.append(_STATUS[query.status])
    if query.since is not None:
        where.append("e.start_date >= :since")
    statement = text(
        "SELECT e.*, p.name AS pipeline_name FROM pipeline_execution e "
        f"JOIN pipeline p ON p.id = e.pipeline_id WHERE {' AND '.join(where)} "
        "ORDER BY e.start_date DESC, e.id DESC LIMIT :limit OFFSET :offset"
    )
    async with transaction(services_of(request).engine) as conn:
        rows = await conn.execute(statement, query.model_dump())
        return [views.response_row(crud.row_dict(r)) for r in rows]
