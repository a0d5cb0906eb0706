"""OpenLineage runs as executions: the pipeline of a job, the execution of a run (placeholders
for parents named before they report), re-parenting, a late START moving the start back, and
the end."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from watcher import executions, pipelines
from watcher.db import locks
from watcher.errors import Conflict, InvalidInput
from watcher.events import ExecutionStarted
from watcher.openlineage.events import JobRef, RunEvent, RunRef
from watcher.openlineage.mapping import described, fit_name, merge_metadata, pipeline_name


@dataclass
class Ingest:
    """One event's work: the connection, the time, and events to emit after commit."""

    conn: AsyncConnection
    now: datetime
    auto_rules: bool
    notices: list[object] = field(default_factory=list)


async def ensure_pipeline(ctx: Ingest, job: JobRef, facets: dict[str, Any]) -> int:
    name = pipeline_name(job)
    found = (
        await ctx.conn.execute(text("SELECT id FROM pipeline WHERE name = :n"), {"n": name})
    ).scalar()
    if found is None:
        body = pipelines.PipelineCreate(name=name, pipeline_type_name=fit_name(job.namespace))
        row, _ = await pipelines.create_or_get(ctx.conn, body, ctx.now, ctx.auto_rules)
        found = row["id"]
    await merge_metadata(
        ctx.conn, "pipeline", "pipeline_metadata", found, described(job.namespace, job.name, facets)
    )
    return int(found)


FIND_RUN = text(
    "SELECT id, pipeline_id, parent_id, start_date, end_date, completed_successfully,"
    " execution_metadata AS metadata"
    " FROM pipeline_execution WHERE run_id = :r"
)


async def find_run(ctx: Ingest, run_id: UUID) -> Any:
    return (await ctx.conn.execute(FIND_RUN, {"r": str(run_id)})).first()


async def start_run(
    ctx: Ingest, pipeline_id: int, run_id: UUID, start: datetime, parent_id: int | None
) -> int:
    body = executions.StartExecution(
        pipeline_id=pipeline_id, start_date=start, parent_id=parent_id, run_id=str(run_id)
    )
    row, created = await executions.start(ctx.conn, body, ctx.now)
    if created:
        ctx.notices.append(
            ExecutionStarted(row["id"], pipeline_id, row["pipeline"], row["pipeline_type"], start)
        )
    return int(row["id"])


async def ensure_ref(
    ctx: Ingest, run: RunRef, job: JobRef, start: datetime, parent_id: int | None
) -> int:
    """The execution of a run named only in a parent facet, created when unknown."""
    found = await find_run(ctx, run.runId)
    if found is not None:
        return int(found.id)
    pipeline_id = await ensure_pipeline(ctx, job, {})
    execution_id = await start_run(ctx, pipeline_id, run.runId, start, parent_id)
    # Until its own events arrive it is only a placeholder: kept out of overdue checks.
    await merge_metadata(
        ctx.conn,
        "pipeline_execution",
        "execution_metadata",
        execution_id,
        {"openlineage": {"placeholder": True}},
    )
    return execution_id


async def ensure_parent(ctx: Ingest, event: RunEvent, start: datetime) -> int | None:
    parent = event.run.facets.parent
    if parent is None:
        return None
    if parent.run.runId == event.run.runId:
        raise InvalidInput.field(
            ["body", "run", "facets", "parent", "run", "runId"], "a run cannot be its own parent"
        )
    root_id = None
    if parent.root is not None and parent.root.run.runId not in (
        parent.run.runId,
        event.run.runId,
    ):
        root_id = await ensure_ref(ctx, parent.root.run, parent.root.job, start, None)
    return await ensure_ref(ctx, parent.run, parent.job, start, root_id)


# Re-parenting is rare (a placeholder meeting its own parent facet); serialising it on one
# advisory lock keeps two moves in one branch of the tree from interleaving their closure edits.
IN_SUBTREE = text("""
SELECT 1 FROM pipeline_execution_closure WHERE ancestor_id = :id AND descendant_id = :parent
""")
SET_PARENT = text("""
UPDATE pipeline_execution SET parent_id = :parent
WHERE id = :id AND parent_id IS NOT DISTINCT FROM CAST(:old AS bigint)
""")
# Closure rows from the old ancestors to the subtree go; rows within the subtree stay.
DETACH = text("""
DELETE FROM pipeline_execution_closure
WHERE descendant_id IN (SELECT descendant_id FROM pipeline_execution_closure
                        WHERE ancestor_id = :id)
  AND ancestor_id NOT IN (SELECT descendant_id FROM pipeline_execution_closure
                          WHERE ancestor_id = :id)
""")
ATTACH = text("""
INSERT INTO pipeline_execution_closure (ancestor_id, descendant_id, depth)
SELECT up.ancestor_id, sub.descendant_id, up.depth + sub.depth + 1
FROM pipeline_execution_closure up, pipeline_execution_closure sub
WHERE up.descendant_id = :parent AND sub.ancestor_id = :id
""")

# The pipeline graph's nesting pair of the move (see executions.START_SQL).
NESTING = text("""
INSERT INTO pipeline_nesting (parent_pipeline_id, child_pipeline_id)
SELECT p.pipeline_id, c.pipeline_id FROM pipeline_execution c, pipeline_execution p
WHERE c.id = :id AND p.id = :parent AND p.pipeline_id <> c.pipeline_id
ON CONFLICT DO NOTHING
""")


async def reparent(ctx: Ingest, execution_id: int, old: int | None, parent_id: int) -> None:
    """Move an execution and its subtree under `parent_id`, closure rows included."""
    await ctx.conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": locks.REPARENT})
    found = await ctx.conn.execute(IN_SUBTREE, {"id": execution_id, "parent": parent_id})
    if found.first() is not None:
        raise InvalidInput.field(
            ["body", "run", "facets", "parent", "run", "runId"],
            "the parent run is already recorded as a descendant of this run",
        )
    moved = await ctx.conn.execute(
        SET_PARENT, {"id": execution_id, "old": old, "parent": parent_id}
    )
    if not moved.rowcount:
        raise Conflict(f"execution {execution_id} was re-parented concurrently, retry")
    await ctx.conn.execute(DETACH, {"id": execution_id})
    await ctx.conn.execute(ATTACH, {"id": execution_id, "parent": parent_id})
    await ctx.conn.execute(NESTING, {"id": execution_id, "parent": parent_id})


async def adopt_parent(ctx: Ingest, event: RunEvent, found: Any) -> None:
    """The run's own parent facet replaces a parent that is missing or was only inferred."""
    if event.run.facets.parent is None:
        return
    previous = (found.metadata or {}).get("openlineage", {})
    if found.parent_id is not None and "parent" in previous.get("facets", {}):
        return  # already placed by its own facet: the first one wins
    parent_id = await ensure_parent(ctx, event, found.start_date)
    if parent_id is not None and parent_id != found.parent_id:
        await reparent(ctx, int(found.id), found.parent_id, parent_id)


MOVE_START = text("""
UPDATE pipeline_execution SET start_date = CAST(:t AS timestamptz),
    hour_recorded = CAST(:h AS smallint), date_recorded = CAST(:d AS date),
    duration_seconds = extract(epoch FROM (end_date - CAST(:t AS timestamptz))),
    throughput = total_rows / NULLIF(extract(epoch FROM (end_date - CAST(:t AS timestamptz))), 0)
WHERE id = :id AND start_date > CAST(:t AS timestamptz)
  AND (end_date IS NULL OR end_date >= CAST(:t AS timestamptz))
""")


async def move_start(ctx: Ingest, execution_id: int, start: datetime) -> bool:
    """An earlier eventTime (a START arriving late) moves the start back; never past the end."""
    params = {"id": execution_id, "t": start, "h": start.hour, "d": start.date()}
    return bool((await ctx.conn.execute(MOVE_START, params)).rowcount)


async def end_run(
    ctx: Ingest, execution_id: int, event: RunEvent, kind: str, total_rows: int | None
) -> dict[str, Any]:
    """End the run at its eventTime, or at its start when the eventTime is earlier (a naive
    local timestamp west of UTC, a skewed clock): the end is kept, the sent time noted."""
    start = (
        await ctx.conn.execute(
            text("SELECT start_date FROM pipeline_execution WHERE id = :id"), {"id": execution_id}
        )
    ).scalar_one()
    end = max(event.eventTime, start)
    body = executions.EndExecution(
        id=execution_id,
        end_date=end,
        completed_successfully=kind == "COMPLETE",
        total_rows=total_rows,
    )
    row = await executions.end(ctx.conn, body, ctx.now)
    if row is not None:
        ctx.notices.append(executions.ended_event(row, body, end))
    if end == event.eventTime:
        return {}
    return {"reported_end_time": event.raw_time, "end_adjusted": True}


# --- locks ---------------------------------------------------------------------------------


def lock_names(event: RunEvent) -> set[str]:
    """What one run event writes besides addresses: its job's and its run's rows, and those of
    the parent and root it names (a placeholder may be created, a child attached)."""
    parent = event.run.facets.parent
    refs: list[tuple[JobRef, RunRef]] = [(event.job, event.run)]
    if parent is not None:
        refs.append((parent.job, parent.run))
        if parent.root is not None:
            refs.append((parent.root.job, parent.root.run))
    return {n for job, run in refs for n in (f"pipeline {pipeline_name(job)}", f"run {run.runId}")}


def lock_key(name: str) -> int:
    """A signed 32-bit key (the second half of a two-key advisory lock)."""
    return int.from_bytes(
        hashlib.blake2b(name.encode(), digest_size=4).digest(), "big", signed=True
    )


async def lock_run(ctx: Ingest, names: set[str]) -> None:
    """Serialise the events that share a job or a run, taking every key in one global order:
    two events wait for each other at most once, never in a cycle (no deadlock). Different
    DAGs touch only addresses in common, which are written in name order (datasets.py)."""
    for key in sorted({lock_key(n) for n in names}):
        await ctx.conn.execute(
            text("SELECT pg_advisory_xact_lock(:c, :k)"), {"c": locks.OPENLINEAGE_RUN, "k": key}
        )
