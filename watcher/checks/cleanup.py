"""Log cleanup: delete history older than the retention, in committed batches.

cutoff = midnight UTC of (today − retention_days), retention ≥ 90 days. In FK-safe order,
each batch its own transaction (a long cleanup never holds locks for long, and an interrupted
one keeps what it did):
1. freshness, timeliness, missed-run and learned-finding logs created before the cutoff
   (created_at indexes);
2. anomaly results detected before the cutoff (detected_at index);
3. executions started before the cutoff (start_date index), each batch with its closure rows
   and the logs/results/learned findings/expectation feedback still pointing at those
   executions, then the executions themselves (children keep existing with parent_id set
   null by the foreign key). Expectation feedback is a verdict on one run: it goes with it.
Re-running with the same cutoff finds nothing more to delete.

`dry_run` counts, in one read-only statement with the same cutoff, the rows each table would
lose: rows old by their own age plus, for the tables that point at executions, rows of
executions started before the cutoff. Nothing is deleted.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, time, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request

from watcher.checks.anomalies import baselines
from watcher.db.engine import transaction
from watcher.fields import Body
from watcher.routing import Router
from watcher.services import Services, services_of

log = logging.getLogger("watcher.checks.cleanup")
router = Router("checks")

MAX_BATCHES_PER_TABLE = 1_000_000


class CleanupRequest(Body):
    retention_days: int = Field(ge=90, le=36_500)
    batch_size: int = Field(default=10_000, ge=1, le=100_000)
    dry_run: bool = False


class CleanupDone(BaseModel):
    status: Literal["completed"]
    dry_run: Literal[False]
    retention_days: int
    cutoff: datetime
    deleted: dict[str, int]
    # The original Watcher's answer, beside ours.
    total_pipeline_executions_deleted: int
    total_timeliness_pipeline_execution_logs_deleted: int
    total_anomaly_detection_results_deleted: int
    total_pipeline_execution_closure_parent_deleted: int
    total_pipeline_execution_closure_child_deleted: int
    total_freshness_pipeline_logs_deleted: int


class CleanupDryRun(BaseModel):
    status: Literal["dry_run"]
    dry_run: Literal[True]
    retention_days: int
    cutoff: datetime
    would_delete: dict[str, int]


# (table, timestamp column): deleted by their own age, before executions.
LOGS = (
    ("freshness_pipeline_log", "created_at"),
    ("timeliness_pipeline_execution_log", "created_at"),
    ("missed_run_log", "created_at"),
    ("anomaly_detection_result", "detected_at"),
    ("learned_finding_log", "created_at"),
)

# What each log's deleted rows add to `pruned_log_count` (the per-pipeline counters the
# metrics export are rows logged + rows pruned, so cleanup never makes them go down):
# (RETURNING columns of the DELETE, the SELECT over those rows to GROUP BY 1, 2, 3).
_TALLY = {
    "freshness_pipeline_log": (
        "pipeline_id",
        "SELECT d.pipeline_id, 'freshness', '' AS label, count(*) FROM {src} d",
    ),
    "timeliness_pipeline_execution_log": (
        "pipeline_id, execution_status",
        "SELECT d.pipeline_id, 'timeliness', d.execution_status, count(*) FROM {src} d",
    ),
    "missed_run_log": (
        "pipeline_id",
        "SELECT d.pipeline_id, 'missed_run', '' AS label, count(*) FROM {src} d",
    ),
    "anomaly_detection_result": (
        "rule_id, is_anomaly",
        "SELECT r.pipeline_id, 'anomaly', r.metric_field, count(*) FROM {src} d "
        "JOIN anomaly_detection_rule r ON r.id = d.rule_id WHERE d.is_anomaly",
    ),
    "learned_finding_log": (
        "pipeline_id, kind",
        "SELECT d.pipeline_id, 'learned', d.kind, count(*) FROM {src} d",
    ),
}


def _tally(cte: str, table: str) -> str:
    """A CTE adding the rows CTE `cte` deleted from `table` to their pruned counts."""
    select = _TALLY[table][1].format(src=cte)
    return f"""
    INSERT INTO pruned_log_count AS t (pipeline_id, kind, label, rows)
    {select} GROUP BY 1, 2, 3
    ON CONFLICT (pipeline_id, kind, label) DO UPDATE SET rows = t.rows + excluded.rows
    """


DELETE_EXECUTIONS = text(f"""
WITH batch AS (
    SELECT id FROM pipeline_execution WHERE start_date < :cutoff ORDER BY start_date LIMIT :n
),
closure AS (
    DELETE FROM pipeline_execution_closure c USING batch
    WHERE c.descendant_id = batch.id OR c.ancestor_id = batch.id
    RETURNING c.ancestor_id IN (SELECT id FROM batch) AS by_parent
),
timeliness AS (
    DELETE FROM timeliness_pipeline_execution_log l USING batch
    WHERE l.pipeline_execution_id = batch.id RETURNING l.pipeline_id, l.execution_status
),
results AS (
    DELETE FROM anomaly_detection_result r USING batch
    WHERE r.pipeline_execution_id = batch.id RETURNING r.rule_id, r.is_anomaly
),
learned AS (
    DELETE FROM learned_finding_log l USING batch
    WHERE l.pipeline_execution_id = batch.id RETURNING l.pipeline_id, l.kind
),
feedback AS (
    DELETE FROM expectation_feedback f USING batch
    WHERE f.pipeline_execution_id = batch.id RETURNING 1
),
timeliness_tally AS ({_tally("timeliness", "timeliness_pipeline_execution_log")}),
results_tally AS ({_tally("results", "anomaly_detection_result")}),
learned_tally AS ({_tally("learned", "learned_finding_log")})
SELECT (SELECT count(*) FROM closure) AS closure,
       (SELECT count(*) FROM closure WHERE by_parent) AS closure_parent,
       (SELECT count(*) FROM timeliness) AS timeliness,
       (SELECT count(*) FROM results) AS results,
       (SELECT count(*) FROM learned) AS learned,
       (SELECT count(*) FROM feedback) AS feedback,
       ARRAY(SELECT id FROM batch) AS ids
""")


# What `cleanup` would delete at this cutoff, table by table (the union of both of its passes).
COUNT_DOOMED = text("""
WITH old AS (SELECT id FROM pipeline_execution WHERE start_date < :cutoff)
SELECT
    (SELECT count(*) FROM freshness_pipeline_log WHERE created_at < :cutoff)
        AS freshness_pipeline_log,
    (SELECT count(*) FROM timeliness_pipeline_execution_log
     WHERE created_at < :cutoff OR pipeline_execution_id IN (SELECT id FROM old))
        AS timeliness_pipeline_execution_log,
    (SELECT count(*) FROM missed_run_log WHERE created_at < :cutoff) AS missed_run_log,
    (SELECT count(*) FROM anomaly_detection_result
     WHERE detected_at < :cutoff OR pipeline_execution_id IN (SELECT id FROM old))
        AS anomaly_detection_result,
    (SELECT count(*) FROM learned_finding_log
     WHERE created_at < :cutoff OR pipeline_execution_id IN (SELECT id FROM old))
        AS learned_finding_log,
    (SELECT count(*) FROM expectation_feedback
     WHERE pipeline_execution_id IN (SELECT id FROM old)) AS expectation_feedback,
    (SELECT count(*) FROM pipeline_execution_closure
     WHERE descendant_id IN (SELECT id FROM old) OR ancestor_id IN (SELECT id FROM old))
        AS pipeline_execution_closure,
    (SELECT count(*) FROM old) AS pipeline_execution
""")


def cutoff_for(now: datetime, retention_days: int) -> datetime:
    return datetime.combine(
        now.astimezone(UTC).date() - timedelta(days=retention_days), time(), UTC
    )


def _delete_log_sql(table: str, column: str) -> Any:
    # ORDER BY makes the batch an index range scan that stops after n rows, rather than a
    # sequential scan wading through the dead tuples of the batches before it.
    return text(f"""
    WITH d AS (
        DELETE FROM {table} WHERE id IN
            (SELECT id FROM {table} WHERE {column} < :cutoff ORDER BY {column} LIMIT :n)
        RETURNING {_TALLY[table][0]}
    ),
    tally AS ({_tally("d", table)})
    SELECT count(*) FROM d
    """)


async def _delete_logs(
    engine: AsyncEngine, table: str, column: str, cutoff: datetime, n: int
) -> int:
    statement = _delete_log_sql(table, column)
    total = 0
    for _ in range(MAX_BATCHES_PER_TABLE):
        async with transaction(engine) as conn:
            deleted = (await conn.execute(statement, {"cutoff": cutoff, "n": n})).scalar_one()
        total += deleted
        if deleted:
            log.info("cleanup batch", extra={"table": table, "deleted": deleted, "total": total})
        if deleted < n:
            break
    return total


async def _delete_executions(engine: AsyncEngine, cutoff: datetime, n: int) -> dict[str, int]:
    counts = dict.fromkeys(
        (
            "pipeline_execution_closure",
            "pipeline_execution_closure_parent",
            "timeliness_pipeline_execution_log",
            "anomaly_detection_result",
            "learned_finding_log",
            "expectation_feedback",
            "pipeline_execution",
        ),
        0,
    )
    for _ in range(MAX_BATCHES_PER_TABLE):
        async with transaction(engine) as conn:
            row = (await conn.execute(DELETE_EXECUTIONS, {"cutoff": cutoff, "n": n})).one()
            deleted = 0
            if row.ids:
                days = await baselines.keys_of(conn, list(row.ids))
                deleted = (
                    await conn.execute(
                        text("DELETE FROM pipeline_execution WHERE id = ANY(:ids)"),
                        {"ids": list(row.ids)},
                    )
                ).rowcount
                await baselines.rebuild(conn, days)  # anomaly baselines without them
        counts["pipeline_execution_closure"] += row.closure
        counts["pipeline_execution_closure_parent"] += row.closure_parent
        counts["timeliness_pipeline_execution_log"] += row.timeliness
        counts["anomaly_detection_result"] += row.results
        counts["learned_finding_log"] += row.learned
        counts["expectation_feedback"] += row.feedback
        counts["pipeline_execution"] += deleted
        if deleted:
            log.info(
                "cleanup batch",
                extra={
                    "table": "pipeline_execution",
                    "deleted": deleted,
                    "total": counts["pipeline_execution"],
                },
            )
        if len(row.ids) < n:
            break
    return counts


async def cleanup(
    engine: AsyncEngine, now: datetime, retention_days: int, batch_size: int
) -> dict[str, Any]:
    cutoff = cutoff_for(now, retention_days)
    deleted: dict[str, int] = {}
    for table, column in LOGS:
        deleted[table] = await _delete_logs(engine, table, column, cutoff, batch_size)
    executions = await _delete_executions(engine, cutoff, batch_size)
    by_parent = executions.pop("pipeline_execution_closure_parent")
    for table, count in executions.items():
        deleted[table] = deleted.get(table, 0) + count
    log.info("cleanup finished", extra={"cutoff": cutoff.isoformat(), **deleted})
    return {
        "status": "completed",
        "dry_run": False,
        "retention_days": retention_days,
        "cutoff": cutoff,
        "deleted": deleted,
        **original_totals(deleted, by_parent),
    }


def original_totals(deleted: dict[str, int], closure_by_parent: int) -> dict[str, int]:
    """The original Watcher's counters (its LogCleanupPostOutput), from ours: each table's rows
    whatever the pass that deleted them; closure rows split as its two passes split them (by
    the ancestor, then the remaining ones by the descendant). It has no missed-run log."""
    closure = deleted["pipeline_execution_closure"]
    return {
        "total_pipeline_executions_deleted": deleted["pipeline_execution"],
        "total_timeliness_pipeline_execution_logs_deleted": deleted[
            "timeliness_pipeline_execution_log"
        ],
        "total_anomaly_detection_results_deleted": deleted["anomaly_detection_result"],
        "total_pipeline_execution_closure_parent_deleted": closure_by_parent,
        "total_pipeline_execution_closure_child_deleted": closure - closure_by_parent,
        "total_freshness_pipeline_logs_deleted": deleted["freshness_pipeline_log"],
    }


async def dry_run(engine: AsyncEngine, now: datetime, retention_days: int) -> dict[str, Any]:
    """The rows `cleanup` would delete at this cutoff, per table; deletes nothing."""
    cutoff = cutoff_for(now, retention_days)
    async with transaction(engine) as conn:
        await conn.execute(text("SET TRANSACTION READ ONLY"))
        counts = (await conn.execute(COUNT_DOOMED, {"cutoff": cutoff})).one()._asdict()
    return {
        "status": "dry_run",
        "dry_run": True,
        "retention_days": retention_days,
        "cutoff": cutoff,
        "would_delete": {table: int(n) for table, n in counts.items()},
    }


@router.post(
    "/log_cleanup", scope="admin", body=CleanupRequest, response=CleanupDone | CleanupDryRun
)
async def log_cleanup(request: Request, body: CleanupRequest) -> dict[str, Any]:
    """Delete logs, results and executions older than retention_days (≥ 90), in batches.

    With dry_run, count per table what would be deleted (`would_delete`) and delete nothing."""
    services = services_of(request)
    if body.dry_run:
        return await dry_run(services.engine, services.clock.now(), body.retention_days)
    return await cleanup(
        services.engine, services.clock.now(), body.retention_days, body.batch_size
    )


def setup(services: Services) -> None:
    settings = services.settings
    retention = settings.log_cleanup_retention_days
    if retention is None:
        return

    async def job() -> None:
        await cleanup(
            services.engine, services.clock.now(), retention, settings.log_cleanup_batch_size
        )

    services.scheduler.add_job("log_cleanup", job, seconds=settings.log_cleanup_interval_seconds)
