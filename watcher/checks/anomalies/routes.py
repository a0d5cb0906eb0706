"""Anomaly detection's HTTP routes (rules, manual detection, unflagging) and its jobs."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request

from watcher import crud
from watcher.checks.anomalies import baselines
from watcher.checks.anomalies.detector import Detector, catch_up
from watcher.checks.anomalies.evaluation import evaluate_now
from watcher.checks.anomalies.models import (
    Detection,
    Rule,
    RuleCreate,
    RulePatch,
    RuleQuery,
    Unflag,
)
from watcher.checks.learned.check import findings_of as learned_findings
from watcher.db.engine import sqlstate, transaction
from watcher.db.schema import anomaly_detection_rule
from watcher.errors import Conflict, NotFound
from watcher.events import ExecutionEnded
from watcher.routing import Reply, Router, path_id
from watcher.services import Services, services_of

router = Router("anomaly detection")
FOREIGN_KEY_VIOLATION = "23503"
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


@router.post(
    "/anomaly_detection_rule", scope="admin", body=RuleCreate, response=Rule, status_code=201
)
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


@router.get("/anomaly_detection_rule", query=RuleQuery, response=list[Rule])
async def list_rules(request: Request, query: RuleQuery) -> list[dict[str, Any]]:
    """List rules, optionally of one pipeline (paged by limit/offset)."""
    table = anomaly_detection_rule
    statement = table.select().order_by(table.c.id).limit(query.limit).offset(query.offset)
    if query.pipeline_id is not None:
        statement = statement.where(table.c.pipeline_id == query.pipeline_id)
    async with transaction(services_of(request).engine) as conn:
        return [crud.row_dict(r) for r in await conn.execute(statement)]


@router.get("/anomaly_detection_rule/{id:int}", response=Rule)
async def get_rule(request: Request) -> dict[str, Any]:
    """One anomaly detection rule."""
    async with transaction(services_of(request).engine) as conn:
        return await crud.get_by_id(
            conn, anomaly_detection_rule, path_id(request), "anomaly detection rule"
        )


@router.patch("/anomaly_detection_rule", body=RulePatch, response=Rule)
async def patch_rule(request: Request, body: RulePatch) -> dict[str, Any]:
    """Update a rule by id: threshold, lookback, minimum executions, active flag, and (as the
    original Watcher does) its pipeline_id or metric_field."""
    services = services_of(request)
    key = crud.ByIdOrName(id=body.id)
    changes = {
        k: getattr(body, k)
        for k in body.model_fields_set - {"id"}
        if getattr(body, k) is not None or k not in ("pipeline_id", "metric_field")
    }
    try:
        async with transaction(services.engine) as conn:
            return await crud.patch(
                conn, anomaly_detection_rule, key, changes, services.clock.now(), "rule"
            )
    except IntegrityError as error:
        state = sqlstate(error)
        if state == FOREIGN_KEY_VIOLATION:
            raise NotFound(
                f"pipeline {body.pipeline_id} not found",
                [{"loc": ["body", "pipeline_id"], "msg": "no such pipeline"}],
            ) from None
        if state == crud.UNIQUE_VIOLATION:
            field = "metric_field" if "metric_field" in changes else "pipeline_id"
            raise Conflict(
                "another rule already watches this pipeline's metric",
                [{"loc": ["body", field], "msg": "a rule for (pipeline_id, metric_field) exists"}],
            ) from None
        raise


@router.post("/anomaly_detection/detect/{pipeline_id:int}", scope="admin", response=Detection)
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
        "learned_findings": await learned_findings(
            services, "anomaly", pipeline_id=pipeline_id, execution_id=latest
        ),
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
        # The values count again: recompute the day summary they belong to.
        ids = [body.pipeline_execution_id]
        await baselines.rebuild(conn, await baselines.keys_of(conn, ids))


def setup(services: Services) -> None:
    detector = Detector(services)
    services.detector = detector
    services.events.subscribe(ExecutionEnded, detector.on_end)

    async def job() -> None:
        await catch_up(services)

    services.scheduler.add_job(
        "anomaly_catchup", job, seconds=services.settings.anomaly_catchup_interval_seconds
    )
