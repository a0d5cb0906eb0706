"""HTTP face of learned expectations: read them, give feedback, run the jobs now.

* ``GET /pipeline/{id}/expectations`` — what was learned (or how much history is still
  needed), with the settings in force;
* ``PATCH /pipeline/{id}/expectations``, ``PATCH /pipeline_type/{id}/expectations`` —
  sensitivity and opt-out (the pipeline's own setting wins over its type's);
* ``POST /pipeline/{id}/expectations/feedback`` — "this run is fine" / "exclude this run";
* ``POST /pipeline/{id}/expectations/retrain`` — a new normal: forget everything before now;
* ``POST /expectations/learn``, ``POST /expectations/check`` — run the jobs now (admin).

Every change of settings or feedback clears ``learned_through``, so the next learn job
relearns the pipeline.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request

from watcher.availability.heartbeat import CatchUpPolicy
from watcher.checks.findings import run_check, schedule
from watcher.checks.learned import check as learned_check
from watcher.checks.learned.judge import LoggedLearnedFinding
from watcher.checks.learned.store import learn_stale
from watcher.checks.learned.view import describe
from watcher.db.engine import transaction
from watcher.errors import NotFound
from watcher.fields import Body, Id
from watcher.routing import Router, path_id
from watcher.services import Services, services_of

router = Router("expectations")

Sensitivity = Literal["low", "medium", "high"]


class SettingsPatch(Body):
    """Learning settings; ``null`` sensitivity means "inherit" (type, then medium)."""

    sensitivity: Sensitivity | None = None
    opted_out: bool | None = None

    @model_validator(mode="after")
    def _something(self) -> SettingsPatch:
        if not self.model_fields_set & {"sensitivity", "opted_out"}:
            raise ValueError("give sensitivity and/or opted_out")
        return self


class Feedback(Body):
    pipeline_execution_id: Id
    verdict: Literal["fine", "excluded"] = "fine"


class CheckRequest(Body):
    lookback_minutes: int = Field(default=60, ge=5, le=527_040)


class ExpectationsView(BaseModel):
    """A pipeline's learned expectations (see docs/checks.md, "Learned expectations")."""

    model_config = ConfigDict(extra="allow")
    pipeline_id: int
    state: Literal["learning", "learned", "opted_out"]
    sensitivity: Sensitivity
    opted_out: bool
    retrain_from: datetime | None
    trained_at: datetime | None
    history: dict[str, Any]
    cadence: dict[str, Any] | None
    bands: list[dict[str, Any]]
    freshness: dict[str, Any] | None
    notes: list[str]


class TypeSettings(BaseModel):
    pipeline_type_id: int
    sensitivity: Sensitivity | None
    opted_out: bool


class FeedbackResult(BaseModel):
    pipeline_id: int
    pipeline_execution_id: int
    verdict: str


class LearnReport(BaseModel):
    status: str
    evaluated_at: datetime
    pipelines_learned: int
    with_expectations: int
    more: bool


class LearnedCheckReport(BaseModel):
    status: str
    evaluated_at: datetime
    lookback_minutes: int
    pipelines_checked: int
    new_findings: int
    suppressed_findings: int = 0
    findings: list[LoggedLearnedFinding]


PIPELINE = text("SELECT id, pipeline_type_id FROM pipeline WHERE id = :id")
PIPELINE_SETTINGS = text("""
INSERT INTO pipeline_expectation AS x (pipeline_id, sensitivity, opted_out, updated_at)
VALUES (:id, :sensitivity, COALESCE(:opted_out, false), :now)
ON CONFLICT (pipeline_id) DO UPDATE SET
    sensitivity = CASE WHEN :set_sensitivity THEN excluded.sensitivity ELSE x.sensitivity END,
    opted_out = COALESCE(:opted_out, x.opted_out),
    learned_through = NULL, updated_at = excluded.updated_at
""")
TYPE_SETTINGS = text("""
INSERT INTO pipeline_type_expectation AS x (pipeline_type_id, sensitivity, opted_out, updated_at)
VALUES (:id, :sensitivity, COALESCE(:opted_out, false), :now)
ON CONFLICT (pipeline_type_id) DO UPDATE SET
    sensitivity = CASE WHEN :set_sensitivity THEN excluded.sensitivity ELSE x.sensitivity END,
    opted_out = COALESCE(:opted_out, x.opted_out), updated_at = excluded.updated_at
RETURNING pipeline_type_id, sensitivity, opted_out
""")
# The pipelines of a type relearn with its new settings on the next learn job.
TYPE_RELEARN = text("""
UPDATE pipeline_expectation x SET learned_through = NULL
FROM pipeline p WHERE p.id = x.pipeline_id AND p.pipeline_type_id = :id
""")
RETRAIN = text("""
INSERT INTO pipeline_expectation AS x (pipeline_id, retrain_from, updated_at)
VALUES (:id, :now, :now)
ON CONFLICT (pipeline_id) DO UPDATE SET retrain_from = excluded.retrain_from,
    expectations = NULL, trained_at = NULL, learned_through = NULL,
    updated_at = excluded.updated_at
""")
EXECUTION = text("SELECT id FROM pipeline_execution WHERE id = :eid AND pipeline_id = :id")
FEEDBACK = text("""
INSERT INTO expectation_feedback (pipeline_execution_id, pipeline_id, verdict, created_at)
VALUES (:eid, :id, :verdict, :now)
ON CONFLICT (pipeline_execution_id) DO UPDATE SET verdict = excluded.verdict,
    created_at = excluded.created_at
""")
RELEARN = text("""
INSERT INTO pipeline_expectation AS x (pipeline_id, updated_at) VALUES (:id, :now)
ON CONFLICT (pipeline_id) DO UPDATE SET learned_through = NULL, updated_at = excluded.updated_at
""")


async def _pipeline(conn: AsyncConnection, pipeline_id: int) -> None:
    if (await conn.execute(PIPELINE, {"id": pipeline_id})).first() is None:
        raise NotFound(f"pipeline {pipeline_id} not found")


def _settings_params(body: SettingsPatch, target: int, now: datetime) -> dict[str, Any]:
    return {
        "id": target,
        "sensitivity": body.sensitivity,
        "set_sensitivity": "sensitivity" in body.model_fields_set,
        "opted_out": body.opted_out,
        "now": now,
    }


@router.get("/pipeline/{id:int}/expectations", response=ExpectationsView)
async def get_expectations(request: Request) -> dict[str, Any]:
    """A pipeline's learned expectations, or how much history learning still needs."""
    services = services_of(request)
    pipeline_id = path_id(request)
    async with transaction(services.engine) as conn:
        await _pipeline(conn, pipeline_id)
        return await describe(conn, pipeline_id, services.clock.now())


@router.patch("/pipeline/{id:int}/expectations", body=SettingsPatch, response=ExpectationsView)
async def patch_pipeline_settings(request: Request, body: SettingsPatch) -> dict[str, Any]:
    """Set a pipeline's sensitivity (low, medium, high; null inherits) or opt it out."""
    services = services_of(request)
    pipeline_id, now = path_id(request), services.clock.now()
    async with transaction(services.engine) as conn:
        await _pipeline(conn, pipeline_id)
        await conn.execute(PIPELINE_SETTINGS, _settings_params(body, pipeline_id, now))
        return await describe(conn, pipeline_id, now)


@router.patch("/pipeline_type/{id:int}/expectations", body=SettingsPatch, response=TypeSettings)
async def patch_type_settings(request: Request, body: SettingsPatch) -> dict[str, Any]:
    """Set a pipeline type's default sensitivity or opt all its pipelines out."""
    services = services_of(request)
    type_id, now = path_id(request), services.clock.now()
    async with transaction(services.engine) as conn:
        found = await conn.execute(
            text("SELECT 1 FROM pipeline_type WHERE id = :id"), {"id": type_id}
        )
        if found.first() is None:
            raise NotFound(f"pipeline type {type_id} not found")
        row = (await conn.execute(TYPE_SETTINGS, _settings_params(body, type_id, now))).one()
        await conn.execute(TYPE_RELEARN, {"id": type_id})
        return dict(row._mapping)


@router.post(
    "/pipeline/{id:int}/expectations/feedback",
    scope="admin",
    body=Feedback,
    response=FeedbackResult,
)
async def post_feedback(request: Request, body: Feedback) -> dict[str, Any]:
    """Mark one of the pipeline's runs as fine (train on it) or excluded (never train on it)."""
    services = services_of(request)
    pipeline_id, now = path_id(request), services.clock.now()
    params = {"id": pipeline_id, "eid": body.pipeline_execution_id, "now": now}
    async with transaction(services.engine) as conn:
        await _pipeline(conn, pipeline_id)
        if (await conn.execute(EXECUTION, params)).first() is None:
            raise NotFound(
                f"execution {body.pipeline_execution_id} of pipeline {pipeline_id} not found"
            )
        await conn.execute(FEEDBACK, params | {"verdict": body.verdict})
        await conn.execute(RELEARN, params)
    return {
        "pipeline_id": pipeline_id,
        "pipeline_execution_id": body.pipeline_execution_id,
        "verdict": body.verdict,
    }


@router.post("/pipeline/{id:int}/expectations/retrain", scope="admin", response=ExpectationsView)
async def post_retrain(request: Request) -> dict[str, Any]:
    """A new normal: forget the history before now and learn again from the next runs."""
    services = services_of(request)
    pipeline_id, now = path_id(request), services.clock.now()
    async with transaction(services.engine) as conn:
        await _pipeline(conn, pipeline_id)
        await conn.execute(RETRAIN, {"id": pipeline_id, "now": now})
        return await describe(conn, pipeline_id, now)


async def learn(services: Services) -> dict[str, Any]:
    settings = services.settings
    now = services.clock.now()
    async with transaction(services.engine) as conn:
        return await learn_stale(
            conn, now, batch=settings.learn_batch, relearn_after=timedelta(days=1)
        )


async def run(services: Services, lookback_minutes: int) -> dict[str, Any]:
    policy = CatchUpPolicy.of(services.settings)

    async def checked(conn: AsyncConnection, now: datetime) -> dict[str, Any]:
        return await learned_check.check(conn, now, lookback_minutes, policy=policy)

    return await run_check(services, "learned", checked, checked="pipelines_checked")


@router.post("/expectations/learn", scope="admin", response=LearnReport)
async def post_learn(request: Request) -> dict[str, Any]:
    """Run the learn job now: relearn pipelines with runs newer than their expectations."""
    return await learn(services_of(request))


@router.post("/expectations/check", scope="admin", body=CheckRequest, response=LearnedCheckReport)
async def post_check(request: Request, body: CheckRequest) -> dict[str, Any]:
    """Run the learned check now: late, overdue, stale and anomalous against what was learned."""
    return await run(services_of(request), body.lookback_minutes)


def setup(services: Services) -> None:
    settings = services.settings
    schedule(services, "learn", lambda: learn(services), int(settings.learn_interval_seconds))
    schedule(
        services,
        "learned_check",
        lambda: run(services, settings.timeliness_lookback_minutes),
        int(settings.learned_check_interval_seconds),
    )
