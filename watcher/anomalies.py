"""Anomaly detection: rules per (pipeline, metric), evaluation of successful executions,
flags, and the guarantees around running it.

Evaluating one execution (`evaluate_execution`), in one transaction:
1. read the pipeline's active rules that have no result for this execution yet;
2. claim it: `UPDATE … SET anomaly_checked_at = now WHERE id = … AND anomaly_checked_at IS NULL`
   — the row lock serialises concurrent evaluations, and a claim that matches no row means
   another evaluation already committed (the manual route re-evaluates missing rules instead;
   a result written meanwhile is skipped by the unique (execution, rule) constraint);
3. read the baseline once: the pipeline's other successful executions with the same UTC hour
   (hour_recorded) that ended within the largest lookback before this execution's end — so
   the outcome does not depend on when the evaluation happens (ix_pipeline_execution_baseline);
4. per rule, drop null values and executions flagged for that metric, then `statistics.evaluate`;
5. insert results ON CONFLICT (execution, rule) DO NOTHING and set `anomaly_flags[metric]`.
A crash anywhere rolls the claim back with everything else.

When it runs: after every successful end, as a background task on the server's loop
(bounded concurrency, never awaited by the request); and a leader-only catch-up job
evaluates every successful execution whose `anomaly_checked_at` is still null (a crash, a
restart, a dropped task), through the partial index ix_pipeline_execution_unchecked.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, Field
from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request

from watcher import crud
from watcher.database import transaction
from watcher.errors import NotFound
from watcher.events import ExecutionEnded
from watcher.fields import Body, Id, MetricField
from watcher.routing import Reply, Router, path_id
from watcher.schema import ANOMALY_METRICS, anomaly_detection_result, anomaly_detection_rule
from watcher.services import Services, services_of
from watcher.statistics import evaluate

log = logging.getLogger("watcher.anomalies")
router = Router("anomaly detection")

CONCURRENCY = 4
MAX_PENDING = 1_000
CATCHUP_BATCH = 500


def _known_metric(value: str) -> str:
    if value not in ANOMALY_METRICS:
        raise ValueError(f"must be one of {', '.join(ANOMALY_METRICS)}")
    return value


Metric = Annotated[MetricField, AfterValidator(_known_metric)]
ZThreshold = Annotated[float, Field(ge=1, le=10)]
LookbackDays = Annotated[int, Field(ge=1, le=365)]
MinimumExecutions = Annotated[int, Field(ge=5, le=1000)]


class RuleCreate(Body):
    pipeline_id: Id
    metric_field: Metric
    z_threshold: ZThreshold = 3.0
    lookback_days: LookbackDays = 30
    minimum_executions: MinimumExecutions = 30
    active: bool = True


class RulePatch(Body):
    id: Id
    z_threshold: ZThreshold | None = None
    lookback_days: LookbackDays | None = None
    minimum_executions: MinimumExecutions | None = None
    active: bool | None = None


class RuleQuery(crud.Page):
    pipeline_id: Id | None = None


class Unflag(Body):
    pipeline_id: Id | None = None
    pipeline_execution_id: Id
    metric_field: Annotated[list[Metric], Field(min_length=1, max_length=len(ANOMALY_METRICS))]


# --- evaluation -------------------------------------------------------------------------

_RETURNING = "RETURNING id, pipeline_id, hour_recorded, end_date, " + ", ".join(ANOMALY_METRICS)
CLAIM = text(f"""
UPDATE pipeline_execution SET anomaly_checked_at = :now
WHERE id = :id AND completed_successfully AND anomaly_checked_at IS NULL {_RETURNING}
""")
RECLAIM = text(f"""
UPDATE pipeline_execution SET anomaly_checked_at = COALESCE(anomaly_checked_at, :now)
WHERE id = :id AND completed_successfully {_RETURNING}
""")
# Read before the claim so the transaction locks rule → execution → result, the FK order in
# which TRUNCATE (tests) and cleanup take them: no lock-order deadlock with either.
PENDING_RULES = text("""
SELECT r.id, r.metric_field, r.z_threshold, r.lookback_days, r.minimum_executions
FROM anomaly_detection_rule r
WHERE r.pipeline_id = (SELECT e.pipeline_id FROM pipeline_execution e WHERE e.id = :id)
  AND r.active
  AND NOT EXISTS (SELECT 1 FROM anomaly_detection_result x
                  WHERE x.pipeline_execution_id = :id AND x.rule_id = r.id)
ORDER BY r.id
""")
BASELINE = text(f"""
SELECT end_date, anomaly_flags, {", ".join(ANOMALY_METRICS)}
FROM pipeline_execution
WHERE pipeline_id = :pipeline_id AND hour_recorded = :hour AND completed_successfully
  AND end_date >= :since AND end_date <= :until AND id <> :id
""")
SET_FLAGS = text("""
UPDATE pipeline_execution SET anomaly_flags = COALESCE(anomaly_flags, '{}'::jsonb) || :flags
WHERE id = :id
""").bindparams(bindparam("flags", type_=JSONB))


def _flagged(flags: dict[str, Any] | None, metric: str) -> bool:
    return bool(flags) and flags.get(metric) is True  # type: ignore[union-attr]


def baseline_values(
    rows: list[dict[str, Any]], metric: str, end: datetime, lookback_days: int
) -> list[float]:
    """Values of `metric` in the baseline rows that count for a rule (pure)."""
    since = end - timedelta(days=lookback_days)
    return [
        float(r[metric])
        for r in rows
        if r["end_date"] >= since
        and r[metric] is not None
        and not _flagged(r["anomaly_flags"], metric)
    ]


def judge_rules(
    execution: dict[str, Any], rules: list[dict[str, Any]], baseline: list[dict[str, Any]]
) -> list[tuple[dict[str, Any], Any]]:
    """(rule, Evaluation) for every rule that could be evaluated (pure)."""
    judged = []
    for rule in rules:
        value = execution[rule["metric_field"]]
        if value is None:
            continue
        values = baseline_values(
            baseline, rule["metric_field"], execution["end_date"], rule["lookback_days"]
        )
        outcome = evaluate(
            float(value),
            values,
            z_threshold=rule["z_threshold"],
            minimum_executions=rule["minimum_executions"],
        )
        if outcome is not None:
            judged.append((rule, outcome))
    return judged


async def evaluate_execution(
    conn: AsyncConnection, execution_id: int, now: datetime, *, force: bool = False
) -> int | None:
    """Evaluate one successful execution; the number of results written, None if not claimed."""
    rules = [dict(r._mapping) for r in await conn.execute(PENDING_RULES, {"id": execution_id})]
    claimed = await conn.execute(RECLAIM if force else CLAIM, {"id": execution_id, "now": now})
    row = claimed.first()
    if row is None:
        return None
    if not rules:
        return 0
    execution = dict(row._mapping)
    params = {"id": execution_id, "pipeline_id": execution["pipeline_id"]}
    end: datetime = execution["end_date"]
    since = end - timedelta(days=max(r["lookback_days"] for r in rules))
    baseline_params = params | {"hour": execution["hour_recorded"], "since": since, "until": end}
    baseline = [dict(r._mapping) for r in await conn.execute(BASELINE, baseline_params)]
    judged = judge_rules(execution, rules, baseline)
    if not judged:
        return 0
    values = [_result(execution, rule, outcome, now) for rule, outcome in judged]
    table = anomaly_detection_result
    statement = (
        insert(table)
        .values(values)
        .on_conflict_do_nothing(index_elements=["pipeline_execution_id", "rule_id"])
        .returning(table.c.rule_id, table.c.is_anomaly)
    )
    written = (await conn.execute(statement)).all()
    metric_of = {rule["id"]: rule["metric_field"] for rule, _ in judged}
    flags = {metric_of[r.rule_id]: True for r in written if r.is_anomaly}
    if flags:
        await conn.execute(SET_FLAGS, {"id": execution_id, "flags": flags})
    return len(written)


def _result(execution: dict[str, Any], rule: dict[str, Any], e: Any, now: datetime) -> dict:
    return {
        "pipeline_execution_id": execution["id"],
        "rule_id": rule["id"],
        "violation_value": e.value,
        "z_score": e.z_score,
        "historical_mean": e.mean,
        "std_deviation_value": e.sd,
        "z_threshold": e.z_threshold,
        "threshold_min_value": e.lower,
        "threshold_max_value": e.upper,
        "baseline_count": e.baseline_count,
        "is_anomaly": e.is_anomaly,
        "context": {
            "metric_field": rule["metric_field"],
            "hour_recorded": execution["hour_recorded"],
            "lookback_days": rule["lookback_days"],
            "minimum_executions": rule["minimum_executions"],
        },
        "detected_at": now,
    }


async def evaluate_now(services: Services, execution_id: int, *, force: bool = False) -> int | None:
    async with transaction(services.engine) as conn:
        return await evaluate_execution(conn, execution_id, services.clock.now(), force=force)


class Detector:
    """Runs detection after each successful end, off the request, with bounded concurrency.

    Anything dropped here (too many pending, shutdown, an error) is left with
    anomaly_checked_at null and evaluated by the catch-up job.
    """

    def __init__(self, services: Services) -> None:
        self.services = services
        self.tasks: set[asyncio.Task[None]] = set()
        self._semaphore = asyncio.Semaphore(CONCURRENCY)

    def on_end(self, event: ExecutionEnded) -> None:
        if not event.success:
            return
        if len(self.tasks) >= MAX_PENDING:
            log.warning("anomaly detection deferred to catch-up", extra={"pending": MAX_PENDING})
            return
        task = asyncio.get_running_loop().create_task(self._run(event.execution_id))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, execution_id: int) -> None:
        async with self._semaphore:
            try:
                await evaluate_now(self.services, execution_id)
            except Exception:
                log.exception("anomaly detection failed; catch-up will retry")

    async def drain(self) -> None:
        """Wait for the detections in flight (tests, shutdown)."""
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)


UNCHECKED = text("""
SELECT id, end_date FROM pipeline_execution
WHERE completed_successfully AND anomaly_checked_at IS NULL
  AND (end_date, id) > (:after_end, :after_id)
ORDER BY end_date, id LIMIT :limit
""")


async def catch_up(services: Services) -> int:
    """Evaluate every successful execution not evaluated yet, in one pass; the count claimed."""
    after: tuple[datetime, int] = (datetime.min.replace(tzinfo=services.clock.now().tzinfo), 0)
    claimed = 0
    while True:
        async with transaction(services.engine) as conn:
            params = {"after_end": after[0], "after_id": after[1], "limit": CATCHUP_BATCH}
            batch = (await conn.execute(UNCHECKED, params)).all()
        for row in batch:
            try:
                if await evaluate_now(services, row.id) is not None:
                    claimed += 1
            except Exception:
                log.exception("anomaly catch-up failed for one execution")
        if len(batch) < CATCHUP_BATCH:
            break
        after = (batch[-1].end_date, batch[-1].id)
    if claimed:
        log.info("anomaly catch-up", extra={"evaluated": claimed})
    return claimed


# --- routes -------------------------------------------------------------------------------

RESULTS = text("""
SELECT x.*, r.metric_field FROM anomaly_detection_result x
JOIN anomaly_detection_rule r ON r.id = x.rule_id
WHERE x.pipeline_execution_id = :id ORDER BY r.metric_field
""")
LATEST_SUCCESS = text("""
SELECT id FROM pipeline_execution WHERE pipeline_id = :pipeline_id AND completed_successfully
ORDER BY start_date DESC, id DESC LIMIT 1
""")


@router.post("/anomaly_detection_rule", scope="admin", body=RuleCreate, status_code=201)
async def create_rule(request: Request, body: RuleCreate) -> Reply:
    """Create a rule for (pipeline_id, metric_field), or return the existing one (200)."""
    table = anomaly_detection_rule
    async with transaction(services_of(request).engine) as conn:
        await _pipeline_exists(conn, body.pipeline_id)
        statement = (
            insert(table)
            .values(**body.model_dump())
            .on_conflict_do_nothing(index_elements=["pipeline_id", "metric_field"])
            .returning(table)
        )
        row = (await conn.execute(statement)).first()
        if row is not None:
            return Reply(crud.row_dict(row), 201)
        existing = (
            await conn.execute(
                table.select().where(
                    table.c.pipeline_id == body.pipeline_id,
                    table.c.metric_field == body.metric_field,
                )
            )
        ).one()
        return Reply(crud.row_dict(existing), 200)


async def _pipeline_exists(conn: AsyncConnection, pipeline_id: int) -> None:
    found = await conn.execute(text("SELECT 1 FROM pipeline WHERE id = :id"), {"id": pipeline_id})
    if found.first() is None:
        raise NotFound(
            f"pipeline {pipeline_id} not found",
            [{"loc": ["body", "pipeline_id"], "msg": "no such pipeline"}],
        )


@router.get("/anomaly_detection_rule", query=RuleQuery)
async def list_rules(request: Request, query: RuleQuery) -> list[dict[str, Any]]:
    """List rules, optionally of one pipeline (paged by limit/offset)."""
    table = anomaly_detection_rule
    statement = table.select().order_by(table.c.id).limit(query.limit).offset(query.offset)
    if query.pipeline_id is not None:
        statement = statement.where(table.c.pipeline_id == query.pipeline_id)
    async with transaction(services_of(request).engine) as conn:
        return [crud.row_dict(r) for r in await conn.execute(statement)]


@router.get("/anomaly_detection_rule/{id:int}")
async def get_rule(request: Request) -> dict[str, Any]:
    """One anomaly detection rule."""
    async with transaction(services_of(request).engine) as conn:
        return await crud.get_by_id(
            conn, anomaly_detection_rule, path_id(request), "anomaly detection rule"
        )


@router.patch("/anomaly_detection_rule", body=RulePatch)
async def patch_rule(request: Request, body: RulePatch) -> dict[str, Any]:
    """Update a rule's threshold, lookback, minimum executions or active flag, by id."""
    services = services_of(request)
    key = crud.ByIdOrName(id=body.id)
    changes = {k: getattr(body, k) for k in body.model_fields_set - {"id"}}
    async with transaction(services.engine) as conn:
        return await crud.patch(
            conn, anomaly_detection_rule, key, changes, services.clock.now(), "rule"
        )


@router.post("/anomaly_detection/detect/{pipeline_id:int}", scope="admin")
async def detect(request: Request) -> dict[str, Any]:
    """Run detection now for the pipeline's latest successful execution; returns its results."""
    services = services_of(request)
    pipeline_id = path_id(request, "pipeline_id")
    async with transaction(services.engine) as conn:
        latest = (await conn.execute(LATEST_SUCCESS, {"pipeline_id": pipeline_id})).scalar()
    if latest is None:
        raise NotFound(f"pipeline {pipeline_id} has no successful execution")
    written = await evaluate_now(services, latest, force=True)
    async with transaction(services.engine) as conn:
        results = [crud.row_dict(r) for r in await conn.execute(RESULTS, {"id": latest})]
    return {
        "pipeline_id": pipeline_id,
        "pipeline_execution_id": latest,
        "new_results": written or 0,
        "anomalies": sum(r["is_anomaly"] for r in results),
        "results": results,
    }


UNFLAG = text("""
UPDATE pipeline_execution SET anomaly_flags = anomaly_flags - CAST(:metrics AS text[])
WHERE id = :id AND (CAST(:pipeline_id AS bigint) IS NULL OR pipeline_id = :pipeline_id)
RETURNING id
""")


@router.post("/unflag_anomaly", scope="admin", body=Unflag, status_code=204)
async def unflag(request: Request, body: Unflag) -> None:
    """Remove an execution's anomaly flags for metrics, so it counts in baselines again."""
    params = {
        "id": body.pipeline_execution_id,
        "pipeline_id": body.pipeline_id,
        "metrics": body.metric_field,
    }
    async with transaction(services_of(request).engine) as conn:
        if (await conn.execute(UNFLAG, params)).first() is None:
            raise NotFound(f"execution {body.pipeline_execution_id} not found")


def setup(services: Services) -> None:
    detector = Detector(services)
    services.state["anomaly_detector"] = detector
    services.events.subscribe(ExecutionEnded, detector.on_end)

    async def job() -> None:
        await catch_up(services)

    services.scheduler.add_job(
        "anomaly_catchup", job, seconds=services.settings.anomaly_catchup_interval_seconds
    )
