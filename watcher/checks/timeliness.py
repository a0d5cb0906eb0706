"""Timeliness: executions that run, or ran, longer than their pipeline's rule allows.

1. SQL fetches candidates: executions started within the lookback, plus every execution still
   running whatever its start (the original only looked inside the lookback, so a run stuck
   for longer than the lookback was never reported), minus failed ones, of active pipelines
   with an unmuted rule, that lasted longer than the shortest that rule can be.
2. Python decides with one frozen `now` (`judge`): running and now > start + threshold →
   overdue `running`; succeeded and end > start + threshold → overdue `completed`.
3. One INSERT … ON CONFLICT DO NOTHING logs each overdue execution once (unique
   pipeline_execution_id); the rows it returns are the new findings, the others were already
   logged (no read of the log table: it only grows, its unique index does the work).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request

from watcher.availability.heartbeat import CatchUpPolicy, load_gate
from watcher.checks.findings import FindingLog, Report, new_count, run_check, schedule
from watcher.checks.learned.check import findings_of as learned_findings
from watcher.checks.learned.judge import LoggedLearnedFinding
from watcher.checks.rules import FIXED_SECONDS, resolve, rule_columns_sql, split_row
from watcher.fields import Body
from watcher.routing import Router
from watcher.services import Services, services_of

log = logging.getLogger("watcher.checks.timeliness")
router = Router("checks")


class TimelinessRequest(Body):
    lookback_minutes: int = Field(default=60, ge=5, le=527_040)


@dataclass(frozen=True, slots=True)
class Overdue:
    pipeline_execution_id: int
    pipeline_id: int
    pipeline_name: str
    start_date: datetime
    execution_status: str
    duration_seconds: float
    seconds_threshold: float
    timely_number: int
    timely_datepart: str
    used_child_config: bool


@dataclass(frozen=True, slots=True)
class OverdueFinding(Overdue):
    """An overdue execution as the check reports it (the documented response)."""

    newly_logged: bool


class TimelinessReport(BaseModel):
    status: str
    evaluated_at: datetime
    lookback_minutes: int
    executions_checked: int
    new_findings: int
    suppressed_findings: int = 0
    findings: list[OverdueFinding]
    # Overdue runs of pipelines without a timeliness rule, against their learned duration.
    learned_findings: list[LoggedLearnedFinding] = []


def _least_seconds(alias: str) -> str:
    """SQL: the fewest seconds `alias`'s timeliness rule can last (months ≥ 28 days, years
    ≥ 364: `add_datepart` clamps to the month's end), NULL without a complete rule."""
    cases = " ".join(f"WHEN '{d}' THEN {s}" for d, s in LEAST_SECONDS.items())
    # bigint: a rule number may be up to 2³¹−1, times up to 31,449,600 seconds.
    return (
        f"CAST({alias}.timeliness_number AS bigint) * CASE {alias}.timeliness_datepart {cases} END"
    )


LEAST_SECONDS = FIXED_SECONDS | {"month": 28 * 86_400, "year": 364 * 86_400}

# Backed by ix_pipeline_execution_start_date (lookback) OR ix_pipeline_execution_running
# (partial, end_date IS NULL): a BitmapOr, whatever the size of the history. PostgreSQL
# keeps only executions that lasted longer than the shortest their rule can be (a necessary
# condition, so nothing overdue is lost) and Python decides on the calendar: at thousands of
# runs an hour, the lookback holds hundreds of thousands of executions that are on time.
CANDIDATES = text(f"""
SELECT e.id, e.pipeline_id, e.start_date, e.end_date, e.completed_successfully,
       p.name AS pipeline_name, {rule_columns_sql()}
FROM pipeline_execution e
JOIN pipeline p ON p.id = e.pipeline_id
JOIN pipeline_type t ON t.id = p.pipeline_type_id
WHERE (e.start_date >= :since OR e.end_date IS NULL)
  AND e.completed_successfully IS NOT FALSE
  AND NOT COALESCE(e.end_date IS NULL
      AND e.execution_metadata @> '{{"openlineage": {{"placeholder": true}}}}', false)
  AND p.active
  AND p.mute_timeliness_check IS NOT TRUE AND t.mute_timeliness_check IS NOT TRUE
  AND extract(epoch FROM COALESCE(e.end_date, :now) - e.start_date) > CASE
      WHEN p.timeliness_number IS NOT NULL AND p.timeliness_datepart IS NOT NULL
      THEN {_least_seconds("p")} ELSE {_least_seconds("t")} END
ORDER BY e.start_date, e.id
""")


def judge(row: dict[str, Any], now: datetime) -> Overdue | None:
    """The finding for one execution row (with rule columns), or None when on time."""
    if row["completed_successfully"] is False:
        return None
    child, parent = split_row(row)
    rule = resolve("timeliness", child, parent)
    if rule is None:
        return None
    start: datetime = row["start_date"]
    deadline = rule.deadline(start)
    if row["end_date"] is None:
        status, finished = "running", now
    else:
        status, finished = "completed", row["end_date"]
    if not finished > deadline:
        return None
    return Overdue(
        pipeline_execution_id=row["id"],
        pipeline_id=row["pipeline_id"],
        pipeline_name=row["pipeline_name"],
        start_date=start,
        execution_status=status,
        duration_seconds=(finished - start).total_seconds(),
        seconds_threshold=(deadline - start).total_seconds(),
        timely_number=rule.number,
        timely_datepart=rule.datepart,
        used_child_config=rule.used_child_config,
    )


# One array per column, unnested: a constant number of parameters (asyncpg allows 32,767; a
# multi-row VALUES of 4,000 findings would need 36,000) and one cached prepared statement.
LOG_FINDINGS = text("""
INSERT INTO timeliness_pipeline_execution_log (pipeline_execution_id, pipeline_id,
    duration_seconds, seconds_threshold, execution_status, timely_number, timely_datepart,
    used_child_config, created_at)
SELECT f.*, :now FROM unnest(
    CAST(:pipeline_execution_id AS bigint[]), CAST(:pipeline_id AS bigint[]),
    CAST(:duration_seconds AS double precision[]), CAST(:seconds_threshold AS double precision[]),
    CAST(:execution_status AS text[]), CAST(:timely_number AS integer[]),
    CAST(:timely_datepart AS text[]), CAST(:used_child_config AS boolean[])) AS f
ON CONFLICT (pipeline_execution_id) DO NOTHING
RETURNING pipeline_execution_id
""")
FINDINGS = FindingLog(
    LOG_FINDINGS,
    columns=(
        "pipeline_execution_id",
        "pipeline_id",
        "duration_seconds",
        "seconds_threshold",
        "execution_status",
        "timely_number",
        "timely_datepart",
        "used_child_config",
    ),
    key="pipeline_execution_id",
)


def evidence(overdue: Overdue, now: datetime) -> tuple[datetime, datetime] | None:
    """A still running execution may have ended unseen any time after its start: Watcher
    blind in there (`watcher.availability`) → unknown until caught up. A completed one
    rests on its stored times alone."""
    return (overdue.start_date, now) if overdue.execution_status == "running" else None


async def check(
    conn: AsyncConnection,
    now: datetime,
    lookback_minutes: int,
    policy: CatchUpPolicy | None = None,
) -> Report:
    since = now - timedelta(minutes=lookback_minutes)
    rows = [dict(r._mapping) for r in await conn.execute(CANDIDATES, {"since": since, "now": now})]
    gate = await load_gate(conn, now, policy or CatchUpPolicy())
    found = [f for r in rows if (f := judge(r, now))]
    kept, held = gate.split(found, lambda f: evidence(f, now))
    findings = await FINDINGS.write(conn, kept, now)
    return {
        "status": "completed",
        "evaluated_at": now,
        "lookback_minutes": lookback_minutes,
        "executions_checked": len(rows),
        "new_findings": new_count(findings),
        "suppressed_findings": len(held),
        "findings": findings,
    }


async def run(services: Services, lookback_minutes: int) -> Report:
    policy = CatchUpPolicy.of(services.settings)

    async def checked(conn: AsyncConnection, now: datetime) -> Report:
        return await check(conn, now, lookback_minutes, policy)

    return await run_check(services, "timeliness", checked, checked="executions_checked")


@router.post("/timeliness", scope="admin", body=TimelinessRequest, response=TimelinessReport)
async def timeliness_check(request: Request, body: TimelinessRequest) -> dict[str, Any]:
    """Run the timeliness check now; returns overdue executions (new and already logged)."""
    services = services_of(request)
    report = await run(services, body.lookback_minutes)
    learned = await learned_findings(services, "overdue", body.lookback_minutes)
    return report | {"learned_findings": learned}


def setup(services: Services) -> None:
    settings = services.settings
    lookback = settings.timeliness_lookback_minutes
    schedule(
        services,
        "timeliness",
        lambda: run(services, lookback),
        settings.timeliness_interval_seconds,
    )
