"""OpenLineage ingestion: RunEvents (and JobEvents, DatasetEvents) of spec 2-0-2 become
pipelines, executions, addresses and lineage, so Airflow, dbt and Spark report with no code.

Mapping (one transaction per event):
1. job namespace + name → pipeline `namespace.name` (lowercased; names over 150 characters keep
   a prefix and a hash), created on first sight under the pipeline type `namespace`.
2. run.runId → the execution whose run_id is the runId. The first event of a run creates it;
   its start is the earliest eventTime of the run's non-terminal events. A terminal event
   (COMPLETE/FAIL/ABORT) for an unknown run records it with start = eventTime − 1 µs and
   `openlineage.start_inferred` in execution_metadata; a later START moves the start back.
3. COMPLETE ends it as succeeded, FAIL and ABORT as failed; the first terminal event wins and
   later ones (duplicates, retries) are acknowledged and ignored. RUNNING/OTHER merge facets.
4. the parent run facet → parent_id (the parent, and its root, created when unknown). A run
   first seen as someone's parent has only an inferred parent (its child's root, or none);
   its own parent facet, when its events arrive, moves it (and its subtree) under the real
   parent. Once a run's own facet has named its parent, later facets do not move it again.
5. inputs/outputs → addresses named by dataset URI (`postgres://host:5432/db.schema.table`,
   `s3://bucket/key`, `bigquery://project.dataset.table`), address type = namespace scheme;
   lineage edges = all inputs × all outputs seen in the run, replacing the pipeline's edges
   while its load_lineage is true (as POST /address_lineage does).
6. outputStatistics.rowCount summed over the run's outputs → total_rows: per dataset the
   latest count seen in any of the run's events (kept in `openlineage.row_counts`), so a count
   sent only while RUNNING is not lost; the errorMessage facet → execution_metadata
   error_message / error_stack_trace.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from watcher import addresses, executions, lineage, pipelines
from watcher.db import locks
from watcher.db.engine import transaction
from watcher.errors import Conflict, InvalidInput
from watcher.events import ExecutionStarted
from watcher.openlineage.events import (
    ERROR_MESSAGE_LIMIT,
    MAX_DATASETS,
    STACK_TRACE_LIMIT,
    TERMINAL,
    Dataset,
    DatasetEvent,
    JobEvent,
    JobRef,
    OutputDataset,
    RunEvent,
    RunFacets,
    RunRef,
    parse_event,
)
from watcher.openlineage.mapping import (
    address_spec,
    bounded,
    dataset_uri,
    described,
    fit_name,
    merge_metadata,
    pipeline_name,
)
from watcher.services import Services

# --- pipelines, runs, lineage -------------------------------------------------------------


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
    "SELECT id, pipeline_id, parent_id, start_date, end_date, execution_metadata AS metadata"
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
    return await start_run(ctx, pipeline_id, run.runId, start, parent_id)


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
    throughput = total_rows / extract(epoch FROM (end_date - CAST(:t AS timestamptz)))
WHERE id = :id AND start_date > CAST(:t AS timestamptz)
  AND (end_date IS NULL OR end_date > CAST(:t AS timestamptz))
""")


async def move_start(ctx: Ingest, execution_id: int, start: datetime) -> bool:
    """An earlier eventTime (a START arriving late) moves the start back; never past the end."""
    params = {"id": execution_id, "t": start, "h": start.hour, "d": start.date()}
    return bool((await ctx.conn.execute(MOVE_START, params)).rowcount)


def run_datasets(stored: Any, datasets: list[Any]) -> list[list[str]]:
    """The run's datasets so far plus this event's, in order of first sight."""
    seen = [list(pair) for pair in (stored or [])]
    for dataset in datasets:
        pair = [dataset.namespace, dataset.name]
        if pair not in seen and len(seen) < MAX_DATASETS:
            seen.append(pair)
    return seen


async def record_datasets(
    ctx: Ingest, pipeline_id: int, inputs: list[Dataset], outputs: list[Dataset]
) -> None:
    """Addresses for the datasets, and lineage inputs × outputs while load_lineage is true."""
    specs = [address_spec(d) for d in (*inputs, *outputs)]
    if not specs:
        return
    load = (
        await ctx.conn.execute(
            text("SELECT load_lineage FROM pipeline WHERE id = :id"), {"id": pipeline_id}
        )
    ).scalar()
    if load:
        body = lineage.LineageBody(
            pipeline_id=pipeline_id,
            source_addresses=specs[: len(inputs)],
            target_addresses=specs[len(inputs) :],
        )
        await lineage.replace_edges(ctx.conn, body)  # takes the lineage lock first
    ids = await addresses.ensure(ctx.conn, specs)
    for spec, dataset in zip(specs, (*inputs, *outputs), strict=True):
        if dataset.facets and spec.address_metadata is not None:
            await merge_metadata(
                ctx.conn, "address", "address_metadata", ids[spec.name], spec.address_metadata
            )


def error_metadata(facets: RunFacets) -> dict[str, Any]:
    error = facets.errorMessage
    if error is None:
        return {}
    found: dict[str, Any] = {"error_message": error.message[:ERROR_MESSAGE_LIMIT]}
    if error.programmingLanguage:
        found["error_programming_language"] = error.programmingLanguage
    if error.stackTrace:
        found["error_stack_trace"] = error.stackTrace[:STACK_TRACE_LIMIT]
    return found


def row_counts(stored: Any, outputs: list[OutputDataset]) -> dict[str, int]:
    """outputStatistics.rowCount per output dataset over the run: the latest event's count for
    a dataset wins, and a dataset counted only in an earlier (RUNNING) event keeps its count."""
    counts: dict[str, int] = dict(stored) if isinstance(stored, dict) else {}
    for output in outputs:
        statistics = output.outputFacets.outputStatistics
        if statistics is None or statistics.rowCount is None:
            continue
        uri = dataset_uri(output.namespace, output.name)
        if uri in counts or len(counts) < MAX_DATASETS:
            counts[uri] = statistics.rowCount
    return counts


async def ingest_run(ctx: Ingest, event: RunEvent) -> dict[str, Any]:
    kind = event.eventType or "OTHER"
    terminal = kind in TERMINAL
    pipeline_id = await ensure_pipeline(ctx, event.job, event.job.facets)
    found = await find_run(ctx, event.run.runId)
    inferred = moved = False
    if found is None:
        inferred = terminal
        start = event.eventTime - timedelta(microseconds=1) if terminal else event.eventTime
        parent_id = await ensure_parent(ctx, event, start)
        execution_id = await start_run(ctx, pipeline_id, event.run.runId, start, parent_id)
        ended = False
    else:
        if found.pipeline_id != pipeline_id:
            raise Conflict(
                f"runId {event.run.runId} is already recorded for another job",
                [{"loc": ["body", "run", "runId"], "msg": "belongs to another job"}],
            )
        execution_id, ended = int(found.id), found.end_date is not None
        await adopt_parent(ctx, event, found)
        moved = not terminal and await move_start(ctx, execution_id, event.eventTime)
    stored = (
        await ctx.conn.execute(
            text("SELECT execution_metadata AS m FROM pipeline_execution WHERE id = :id"),
            {"id": execution_id},
        )
    ).scalar() or {}
    previous = stored.get("openlineage", {})
    run_inputs = run_datasets(previous.get("inputs"), event.inputs)
    run_outputs = run_datasets(previous.get("outputs"), event.outputs)
    counts = row_counts(previous.get("row_counts"), [] if ended else event.outputs)
    facets = event.run.facets.model_dump(mode="json", exclude_none=True)
    patch: dict[str, Any] = {
        "openlineage": {
            "namespace": event.job.namespace,
            "name": event.job.name,
            "producer": event.producer,
            "facets": bounded(facets),
            "inputs": run_inputs,
            "outputs": run_outputs,
        }
    }
    if counts:
        patch["openlineage"]["row_counts"] = counts
    if found is None or (kind == "START" and (moved or not ended)):
        patch["openlineage"]["start_inferred"] = inferred
    if not ended:
        patch["openlineage"]["last_event_type"] = kind
        patch |= error_metadata(event.run.facets)
    await merge_metadata(ctx.conn, "pipeline_execution", "execution_metadata", execution_id, patch)
    if event.inputs or event.outputs:
        await record_datasets(
            ctx,
            pipeline_id,
            [Dataset(namespace=n, name=m) for n, m in run_inputs],
            [Dataset(namespace=n, name=m) for n, m in run_outputs],
        )
        await record_dataset_facets(ctx, [*event.inputs, *event.outputs])
    status = "ignored" if ended else "ended" if terminal else "recorded"
    if terminal and not ended:
        await end_run(ctx, execution_id, event, kind, sum(counts.values()) if counts else None)
    return {
        "event_type": kind,
        "pipeline_id": pipeline_id,
        "execution_id": execution_id,
        "status": status,
    }


async def record_dataset_facets(ctx: Ingest, datasets: list[Any]) -> None:
    """This event's dataset facets (schema, storage, …) onto the addresses' metadata."""
    specs = {address_spec(d).name: d for d in datasets if d.facets}
    if not specs:
        return
    rows = await ctx.conn.execute(
        text("SELECT id, name FROM address WHERE name = ANY(CAST(:n AS text[]))"),
        {"n": list(specs)},
    )
    for row in rows.all():
        d = specs[row.name]
        await merge_metadata(
            ctx.conn,
            "address",
            "address_metadata",
            row.id,
            described(d.namespace, d.name, d.facets),
        )


async def end_run(
    ctx: Ingest, execution_id: int, event: RunEvent, kind: str, total_rows: int | None
) -> None:
    body = executions.EndExecution(
        id=execution_id,
        end_date=event.eventTime,
        completed_successfully=kind == "COMPLETE",
        total_rows=total_rows,
    )
    row = await executions.end(ctx.conn, body, ctx.now)
    if row is not None:
        ctx.notices.append(executions.ended_event(row, body, event.eventTime))


async def ingest_job(ctx: Ingest, event: JobEvent) -> dict[str, Any]:
    pipeline_id = await ensure_pipeline(ctx, event.job, event.job.facets)
    inputs: list[Dataset] = list(event.inputs)
    outputs: list[Dataset] = list(event.outputs)
    await record_datasets(ctx, pipeline_id, inputs, outputs)
    return {"event_type": "JOB", "pipeline_id": pipeline_id, "status": "recorded"}


async def ingest_dataset(ctx: Ingest, event: DatasetEvent) -> dict[str, Any]:
    spec = address_spec(event.dataset)
    ids = await addresses.ensure(ctx.conn, [spec])
    assert spec.address_metadata is not None
    await merge_metadata(
        ctx.conn, "address", "address_metadata", ids[spec.name], spec.address_metadata
    )
    return {"event_type": "DATASET", "address_id": ids[spec.name], "status": "recorded"}


async def ingest(services: Services, data: Any) -> dict[str, Any]:
    """Validate and store one event in its own transaction; emit execution events after commit."""
    event = parse_event(data)
    async with transaction(services.engine) as conn:
        ctx = Ingest(
            conn, services.clock.now(), services.settings.auto_create_anomaly_detection_rules
        )
        if isinstance(event, RunEvent):
            result = await ingest_run(ctx, event)
        elif isinstance(event, DatasetEvent):
            result = await ingest_dataset(ctx, event)
        else:
            result = await ingest_job(ctx, event)
    for notice in ctx.notices:
        services.events.emit(notice)
    return result
