"""OpenLineage ingestion: RunEvents (and JobEvents, DatasetEvents) of spec 2-0-2 become
pipelines, executions, addresses and lineage, so Airflow, dbt and Spark report with no code.

Mapping (one transaction per event; the result does not depend on the order events arrive in):
1. job namespace + name → pipeline `namespace.name` (lowercased; names over 150 characters keep
   a prefix and a hash), created on first sight under the pipeline type `namespace`.
2. run.runId → the execution whose run_id is the runId. The first event of a run creates it;
   its start is the earliest eventTime of the run's non-terminal events. A terminal event
   (COMPLETE/FAIL/ABORT) for an unknown run records it with start = end (zero duration) and
   `openlineage.start_inferred`; a later START moves the start back.
3. COMPLETE ends it as succeeded, FAIL and ABORT as failed; the first terminal event wins and
   later ones are acknowledged ("ignored": the end stays; their datasets and row counts are
   still kept). An end before the recorded start ends the run at its start and keeps the sent
   eventTime (`openlineage.reported_end_time`). RUNNING/OTHER merge facets.
4. the parent run facet → parent_id (the parent, and its root, created as placeholders when
   unknown; placeholders are kept out of timeliness until their own events arrive). Its own
   parent facet, when its events arrive, moves it (and its subtree) under the real parent.
5. inputs/outputs → addresses named by dataset URI (case kept except for case-insensitive
   databases); the pipeline's lineage edges = inputs × outputs of its latest run.
6. outputStatistics.rowCount summed over the run's outputs → total_rows (per dataset, the count
   with the latest eventTime); a successful run with an output is a data change for freshness
   (unless every output's rowCount is 0).
7. per-statement child jobs (jobType QUERY/SQL, or `<parent>.query.N` / `<parent>.sql.N`) are
   folded into their parent's execution (`openlineage.queries`), not pipelines of their own.
Events sharing a job or a run are serialised by advisory locks taken in one global order.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import text

from watcher import addresses
from watcher.db.engine import transaction
from watcher.errors import Conflict
from watcher.openlineage.datasets import (
    as_datasets,
    follow_lineage,
    mark_written,
    record_addresses,
    row_counts,
    run_datasets,
    wrote_data,
)
from watcher.openlineage.events import (
    ERROR_MESSAGE_LIMIT,
    STACK_TRACE_LIMIT,
    TERMINAL,
    DatasetEvent,
    JobEvent,
    JobRef,
    ParentRunFacet,
    RunEvent,
    RunFacets,
    parse_event,
)
from watcher.openlineage.mapping import (
    address_spec,
    bounded,
    described,
    merge_metadata,
    pipeline_name,
)
from watcher.openlineage.runs import (
    Ingest,
    adopt_parent,
    end_run,
    ensure_parent,
    ensure_pipeline,
    find_run,
    lock_names,
    lock_run,
    move_start,
    start_run,
)
from watcher.services import Services

MAX_QUERIES = 50
QUERY_TEXT_LIMIT = 500
QUERY_JOB_TYPES = {"QUERY", "SQL"}


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


async def stored_metadata(ctx: Ingest, execution_id: int) -> dict[str, Any]:
    found = (
        await ctx.conn.execute(
            text("SELECT execution_metadata AS m FROM pipeline_execution WHERE id = :id"),
            {"id": execution_id},
        )
    ).scalar()
    return dict(found or {})


async def ensure_pipelines(ctx: Ingest, event: RunEvent) -> int:
    """The pipelines of the job, its parent's and its root's, created in name order (their
    pipeline types with them); the job's own id."""
    jobs: dict[str, tuple[JobRef, dict[str, Any]]] = {
        pipeline_name(event.job): (event.job, event.job.facets)
    }
    parent = event.run.facets.parent
    if parent is not None:
        jobs.setdefault(pipeline_name(parent.job), (parent.job, {}))
        if parent.root is not None:
            jobs.setdefault(pipeline_name(parent.root.job), (parent.root.job, {}))
    ids = {name: await ensure_pipeline(ctx, *jobs[name]) for name in sorted(jobs)}
    return ids[pipeline_name(event.job)]


async def ingest_run(ctx: Ingest, event: RunEvent) -> dict[str, Any]:
    kind = event.eventType or "OTHER"
    terminal = kind in TERMINAL
    await lock_run(ctx, lock_names(event))
    folded = folded_into(event)
    if folded is not None:
        return await ingest_query(ctx, event, folded)
    pipeline_id = await ensure_pipelines(ctx, event)
    found = await find_run(ctx, event.run.runId)
    moved = False
    if found is None:
        parent_id = await ensure_parent(ctx, event, event.eventTime)
        execution_id = await start_run(
            ctx, pipeline_id, event.run.runId, event.eventTime, parent_id
        )
        ended, succeeded, end_date = False, False, None
    else:
        if found.pipeline_id != pipeline_id:
            raise Conflict(
                f"runId {event.run.runId} is already recorded for another job",
                [{"loc": ["body", "run", "runId"], "msg": "belongs to another job"}],
            )
        execution_id, ended = int(found.id), found.end_date is not None
        succeeded, end_date = bool(found.completed_successfully), found.end_date
        await adopt_parent(ctx, event, found)
        moved = not terminal and await move_start(ctx, execution_id, event.eventTime)
    previous = (await stored_metadata(ctx, execution_id)).get("openlineage", {})
    run_inputs = run_datasets(previous.get("inputs"), event.inputs)
    run_outputs = run_datasets(previous.get("outputs"), event.outputs)
    counts, counted_at = row_counts(
        previous.get("row_counts"),
        previous.get("row_counts_at"),
        event.outputs,
        event.eventTime.isoformat(),
    )
    facets = event.run.facets.model_dump(mode="json", exclude_none=True)
    ol: dict[str, Any] = {
        "namespace": event.job.namespace,
        "name": event.job.name,
        "producer": event.producer,
        "facets": bounded(facets),
        "inputs": run_inputs,
        "outputs": run_outputs,
        "placeholder": False,
    }
    patch: dict[str, Any] = {"openlineage": ol}
    if counts:
        ol |= {"row_counts": counts, "row_counts_at": counted_at}
    if found is None:
        ol["start_inferred"] = terminal
    elif not terminal and (moved or not ended):
        ol["start_inferred"] = False
    if not ended:
        ol["last_event_type"] = kind
        patch |= error_metadata(event.run.facets)
    await merge_metadata(ctx.conn, "pipeline_execution", "execution_metadata", execution_id, patch)
    await record_addresses(ctx, [*event.inputs, *event.outputs])
    if (event.inputs or event.outputs or terminal) and (run_inputs or run_outputs):
        await follow_lineage(
            ctx, pipeline_id, execution_id, as_datasets(run_inputs), as_datasets(run_outputs)
        )
    total = sum(counts.values()) if counts else None
    if terminal and not ended:
        adjusted = await end_run(ctx, execution_id, event, kind, total)
        if adjusted:
            await merge_metadata(
                ctx.conn,
                "pipeline_execution",
                "execution_metadata",
                execution_id,
                {"openlineage": adjusted},
            )
        succeeded = kind == "COMPLETE"
        end_date = max(event.eventTime, await start_of(ctx, execution_id))
    elif ended and total is not None:
        await ctx.conn.execute(LATE_TOTAL, {"id": execution_id, "t": total})
    if succeeded and end_date is not None and wrote_data(run_outputs, counts):
        await mark_written(ctx, pipeline_id, end_date)
    return {
        "event_type": kind,
        "pipeline_id": pipeline_id,
        "execution_id": execution_id,
        "status": "ignored" if ended else "ended" if terminal else "recorded",
    }


LATE_TOTAL = text("""
UPDATE pipeline_execution SET total_rows = :t, throughput = :t / NULLIF(duration_seconds, 0)
WHERE id = :id AND total_rows IS DISTINCT FROM :t
""")


async def start_of(ctx: Ingest, execution_id: int) -> Any:
    return (
        await ctx.conn.execute(
            text("SELECT start_date FROM pipeline_execution WHERE id = :id"), {"id": execution_id}
        )
    ).scalar_one()


# --- per-statement child jobs ----------------------------------------------------------------


def folded_into(event: RunEvent) -> ParentRunFacet | None:
    """The parent a per-statement child job folds into: Airflow's `<task>.query.N` (jobType
    QUERY) and dbt-ol's `<node>.sql.N` (jobType SQL). None for every other job."""
    parent = event.run.facets.parent
    if parent is None or parent.run.runId == event.run.runId:
        return None
    job_type = event.job.facets.get("jobType")
    kind = job_type.get("jobType") if isinstance(job_type, dict) else None
    if isinstance(kind, str) and kind.upper() in QUERY_JOB_TYPES:
        return parent
    pattern = re.escape(parent.job.name) + r"\.(query|sql)\.\d+"
    same_namespace = parent.job.namespace == event.job.namespace
    return parent if same_namespace and re.fullmatch(pattern, event.job.name) else None


def query_entry(entry: dict[str, Any], event: RunEvent, kind: str) -> dict[str, Any]:
    """One statement's summary: its job, state (the first terminal event wins), times, SQL."""
    entry = dict(entry) or {"job": event.job.name}
    at = event.eventTime.isoformat()
    if entry.get("last_event_type") not in TERMINAL:
        entry["last_event_type"] = kind
        if kind in TERMINAL:
            entry["end_time"] = at
            if event.run.facets.errorMessage is not None:
                entry["error_message"] = event.run.facets.errorMessage.message[:QUERY_TEXT_LIMIT]
    if kind not in TERMINAL and (entry.get("start_time") or at) >= at:
        entry["start_time"] = at
    sql = event.job.facets.get("sql")
    if isinstance(sql, dict) and isinstance(sql.get("query"), str):
        entry["sql"] = sql["query"][:QUERY_TEXT_LIMIT]
    return entry


async def ingest_query(ctx: Ingest, event: RunEvent, parent: ParentRunFacet) -> dict[str, Any]:
    """A statement's events land on its parent's execution: `openlineage.queries` by runId,
    its datasets added to the parent run's (and so to its lineage). No pipeline of its own."""
    kind = event.eventType or "OTHER"
    found = await find_run(ctx, parent.run.runId)
    if found is None:
        await ensure_parent(ctx, event, event.eventTime)  # a placeholder (and its root)
        found = await find_run(ctx, parent.run.runId)
    execution_id, pipeline_id = int(found.id), int(found.pipeline_id)
    previous = (await stored_metadata(ctx, execution_id)).get("openlineage", {})
    queries = dict(previous.get("queries") or {})
    key = str(event.run.runId)
    ol: dict[str, Any] = {}
    if key in queries or len(queries) < MAX_QUERIES:
        queries[key] = query_entry(queries.get(key, {}), event, kind)
        ol["queries"] = queries
    else:
        ol["queries_truncated"] = True
    ol["inputs"] = run_inputs = run_datasets(previous.get("inputs"), event.inputs)
    ol["outputs"] = run_outputs = run_datasets(previous.get("outputs"), event.outputs)
    await merge_metadata(
        ctx.conn, "pipeline_execution", "execution_metadata", execution_id, {"openlineage": ol}
    )
    await record_addresses(ctx, [*event.inputs, *event.outputs])
    if event.inputs or event.outputs:
        await follow_lineage(
            ctx, pipeline_id, execution_id, as_datasets(run_inputs), as_datasets(run_outputs)
        )
    return {
        "event_type": kind,
        "pipeline_id": pipeline_id,
        "execution_id": execution_id,
        "status": "folded",
    }


# --- jobs, datasets ------------------------------------------------------------------------


async def ingest_job(ctx: Ingest, event: JobEvent) -> dict[str, Any]:
    """The job's current definition: its facets, and its datasets as its lineage."""
    await lock_run(ctx, {f"pipeline {pipeline_name(event.job)}"})
    pipeline_id = await ensure_pipeline(ctx, event.job, event.job.facets)
    await record_addresses(ctx, [*event.inputs, *event.outputs])
    if event.inputs or event.outputs:
        await follow_lineage(ctx, pipeline_id, None, list(event.inputs), list(event.outputs))
    return {"event_type": "JOB", "pipeline_id": pipeline_id, "status": "recorded"}


async def ingest_dataset(ctx: Ingest, event: DatasetEvent) -> dict[str, Any]:
    spec = address_spec(event.dataset)
    ids = await addresses.ensure(ctx.conn, [spec])
    dataset = event.dataset
    await merge_metadata(
        ctx.conn,
        "address",
        "address_metadata",
        ids[spec.name],
        described(dataset.namespace, dataset.name, dataset.facets),
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
