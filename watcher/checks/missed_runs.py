"""Missed runs: a scheduled pipeline that did not start when its cron said it would.

The original Watcher only judges executions that exist, so a pipeline that never starts is
invisible to it. Here a pipeline (or its type) may carry a cron `schedule` with a
`schedule_timezone` (default UTC) and a `schedule_grace_seconds` (default 0); see
`rules.resolve_schedule` for child/parent resolution. For each active, unmuted, scheduled
pipeline, with one frozen `now`:

1. expected_at = the latest fire time of the cron (in its time zone, so DST is the cron's
   business) that is < now − grace: a run is due once its time has passed by *more* than the
   grace. Only that one expected run is judged: after an outage Watcher reports the latest
   missed run, not every one it slept through. The search looks back at most `HORIZON` (a
   yearly cron still has a fire time inside it).
2. It was missed when no execution of the pipeline — running, succeeded or failed, since a
   failure is another alert — started at or after expected_at − the early-start allowance:
   `EARLY_START_TOLERANCE`, but at most half the gap since the cron's previous fire time
   (see `early_start_allowance`).
3. Expected times before the pipeline was created are never findings.
4. Each (pipeline, expected_at) is logged once in `missed_run_log` (unique constraint).

The last start per pipeline is one backward step on ix_pipeline_execution_pipeline_id_start_date.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from apscheduler.triggers.cron import CronTrigger
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request

from watcher.availability.heartbeat import CatchUpPolicy, load_gate
from watcher.checks.findings import FindingLog, Report, new_count, run_check, schedule
from watcher.checks.learned.check import findings_of as learned_findings
from watcher.checks.learned.judge import LoggedLearnedFinding
from watcher.checks.rules import Schedule, resolve_schedule, rule_columns_sql, split_row
from watcher.routing import Router
from watcher.services import Services, services_of

log = logging.getLogger("watcher.checks.missed_runs")
router = Router("checks")

HORIZON = timedelta(days=400)
# A job launched a few seconds early by a skewed clock counts as on time.
EARLY_START_TOLERANCE = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class Missed:
    pipeline_id: int
    pipeline_name: str
    expected_at: datetime
    last_start: datetime | None
    schedule: str
    schedule_timezone: str
    grace_seconds: int
    used_child_config: bool


@dataclass(frozen=True, slots=True)
class MissedRunFinding(Missed):
    """A missed run as the check reports it (the documented response)."""

    newly_logged: bool


class MissedRunsReport(BaseModel):
    status: str
    evaluated_at: datetime
    pipelines_checked: int
    new_findings: int
    suppressed_findings: int = 0
    findings: list[MissedRunFinding]
    # Late starts of pipelines without a cron schedule, against their learned schedule.
    learned_findings: list[LoggedLearnedFinding] = []


@dataclass(frozen=True, slots=True)
class ExpectedRun:
    at: datetime  # the fire time, in the schedule's time zone
    earliest_start: datetime  # a start at or after this counts for the run


@lru_cache(maxsize=1024)
def trigger(cron: str, timezone: str) -> CronTrigger:
    return CronTrigger.from_crontab(cron, timezone=timezone)


def previous_fire_time(cron: CronTrigger, at: datetime) -> datetime | None:
    """The latest fire time strictly before `at` within `HORIZON`, or None.

    APScheduler 3 only computes forward, so widen a window back from `at` (1 minute, 2, 4, …)
    until it holds a fire time, then walk forward through that window to the last one. All
    steps are taken in UTC: wall-clock arithmetic on a zoned fire time lands in DST gaps and
    loses the fold, and in the repeated autumn hour the walk then never ended.
    """
    at = at.astimezone(UTC)
    window = timedelta(minutes=1)
    while True:
        fire: datetime | None = cron.get_next_fire_time(None, at - min(window, HORIZON))
        if fire is None:  # a cron that never fires (e.g. February 30th)
            return None
        if fire < at:
            break
        if window >= HORIZON:
            return None
        window *= 2
    while True:
        following = cron.get_next_fire_time(None, fire.astimezone(UTC) + timedelta(seconds=1))
        if following is None or following >= at:
            return fire
        fire = following


def early_start_allowance(cron: CronTrigger, fire: datetime) -> timedelta:
    """How early a start may be and still count for the run at `fire`.

    `EARLY_START_TOLERANCE`, capped at half the gap since the previous fire time: a start
    nearer the previous run is that run's. Without the cap an every-minute cron's 10:00 start
    (60 s before 10:01) also counted for 10:01, so a missed 10:01 was never seen.
    """
    previous = previous_fire_time(cron, fire)
    if previous is None:
        return EARLY_START_TOLERANCE
    return min(EARLY_START_TOLERANCE, (fire.astimezone(UTC) - previous.astimezone(UTC)) / 2)


def judge(row: dict[str, Any], now: datetime) -> Missed | None:
    child, parent = split_row(row)
    schedule = resolve_schedule(child, parent)
    if schedule is None:
        return None
    expected = _expected(schedule, now)
    if expected is None or expected.at < row["created_at"]:
        return None
    last_start: datetime | None = row["last_start"]
    if last_start is not None and last_start >= expected.earliest_start:
        return None
    return Missed(
        pipeline_id=row["id"],
        pipeline_name=row["pipeline_name"],
        expected_at=expected.at,
        last_start=last_start,
        schedule=schedule.cron,
        schedule_timezone=schedule.timezone,
        grace_seconds=schedule.grace_seconds,
        used_child_config=schedule.used_child_config,
    )


def _expected(schedule: Schedule, now: datetime) -> ExpectedRun | None:
    try:
        return expected_run(
            schedule.cron, schedule.timezone, now - timedelta(seconds=schedule.grace_seconds)
        )
    except (ValueError, LookupError):
        log.warning("invalid schedule skipped", extra={"schedule": schedule.cron})
        return None


@lru_cache(maxsize=1024)
def expected_run(cron: str, timezone: str, due_before: datetime) -> ExpectedRun | None:
    """The run judged at `due_before` (= now − grace): the latest fire time before it, and
    the earliest start that counts for it. Remembered: within one run every pipeline sharing
    a schedule and grace asks the same question, and walking the cron costs ~0.2 ms (2 s for
    10,000 pipelines). Pure, so a cached answer is never stale."""
    cron_trigger = trigger(cron, timezone)
    fire = previous_fire_time(cron_trigger, due_before)
    if fire is None:
        return None
    earliest = fire.astimezone(UTC) - early_start_allowance(cron_trigger, fire)
    return ExpectedRun(at=fire, earliest_start=earliest)


CANDIDATES = text(f"""
SELECT p.id, p.name AS pipeline_name, p.created_at, {rule_columns_sql()},
       (SELECT max(e.start_date) FROM pipeline_execution e WHERE e.pipeline_id = p.id)
           AS last_start
FROM pipeline p JOIN pipeline_type t ON t.id = p.pipeline_type_id
WHERE p.active AND (p.schedule IS NOT NULL OR t.schedule IS NOT NULL)
ORDER BY p.id
""")

# One array per column, unnested: a constant number of parameters (asyncpg allows 32,767, a
# multi-row VALUES of 10,000 findings needs 80,000) and one cached prepared statement.
LOG_FINDINGS = text("""
INSERT INTO missed_run_log (pipeline_id, expected_at, schedule, schedule_timezone,
    grace_seconds, used_child_config, detected_at, created_at)
SELECT f.*, :now, :now FROM unnest(
    CAST(:pipeline_id AS bigint[]), CAST(:expected_at AS timestamptz[]),
    CAST(:schedule AS text[]), CAST(:schedule_timezone AS text[]),
    CAST(:grace_seconds AS integer[]), CAST(:used_child_config AS boolean[])) AS f
ON CONFLICT (pipeline_id, expected_at) DO NOTHING
RETURNING pipeline_id
""")
FINDINGS = FindingLog(
    LOG_FINDINGS,
    columns=(
        "pipeline_id",
        "expected_at",
        "schedule",
        "schedule_timezone",
        "grace_seconds",
        "used_child_config",
    ),
    key="pipeline_id",
)


def evidence(missed: Missed) -> tuple[datetime, datetime]:
    """When a start would have counted for the run: from the earliest allowed to its due time.
    Watcher blind in there (`watcher.availability`) → unknown, not missed, until caught up."""
    due = missed.expected_at + timedelta(seconds=missed.grace_seconds)
    return missed.expected_at - EARLY_START_TOLERANCE, due


async def check(
    conn: AsyncConnection, now: datetime, policy: CatchUpPolicy | None = None
) -> Report:
    rows = [dict(r._mapping) for r in await conn.execute(CANDIDATES)]
    gate = await load_gate(conn, now, policy or CatchUpPolicy())
    kept, held = gate.split([m for r in rows if (m := judge(r, now))], evidence)
    findings = await FINDINGS.write(conn, kept, now)
    return {
        "status": "completed",
        "evaluated_at": now,
        "pipelines_checked": len(rows),
        "new_findings": new_count(findings),
        "suppressed_findings": len(held),
        "findings": findings,
    }


async def run(services: Services) -> Report:
    policy = CatchUpPolicy.of(services.settings)

    async def checked(conn: AsyncConnection, now: datetime) -> Report:
        return await check(conn, now, policy)

    return await run_check(services, "missed runs", checked, checked="pipelines_checked")


@router.post("/missed_runs", scope="admin", response=MissedRunsReport)
async def missed_runs_check(request: Request) -> dict[str, Any]:
    """Run the missed-runs check now; returns scheduled pipelines that did not start."""
    services = services_of(request)
    report = await run(services)
    return report | {"learned_findings": await learned_findings(services, "late_start")}


def setup(services: Services) -> None:
    seconds = services.settings.missed_runs_interval_seconds
    schedule(services, "missed_runs", lambda: run(services), seconds)
