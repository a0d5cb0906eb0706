"""Freshness: pipelines whose targets have not changed within their rule.

1. SQL fetches active pipelines that have written at least once (last DML = the latest of
   last_target_insert/update/soft_delete), with the pipeline's and its type's rule columns.
2. Python decides (`judge`) with one frozen `now`: stale when last DML + threshold < now.
3. One INSERT … ON CONFLICT DO NOTHING logs each stale (pipeline, last DML) once: a pipeline
   stays logged once until it writes again, then a new staleness is a new finding. The rows
   it returns are the new findings; the others were already logged.

The candidate query reads the whole (small) pipeline table, which a sequential scan does best.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request

from watcher.availability.heartbeat import CatchUpPolicy, load_gate
from watcher.checks.findings import FindingLog, Report, new_count, run_check, schedule
from watcher.checks.learned.check import findings_of as learned_findings
from watcher.checks.learned.judge import LoggedLearnedFinding
from watcher.checks.rules import resolve, rule_columns_sql, split_row
from watcher.routing import Router
from watcher.services import Services, services_of

log = logging.getLogger("watcher.checks.freshness")
router = Router("checks")


@dataclass(frozen=True, slots=True)
class Stale:
    pipeline_id: int
    pipeline_name: str
    last_dml_timestamp: datetime
    deadline: datetime
    lag_seconds: float
    threshold_seconds: float
    freshness_number: int
    freshness_datepart: str
    used_child_config: bool


@dataclass(frozen=True, slots=True)
class StaleFinding(Stale):
    """A stale pipeline as the check reports it (the documented response)."""

    newly_logged: bool


class FreshnessReport(BaseModel):
    status: str
    evaluated_at: datetime
    pipelines_checked: int
    new_findings: int
    suppressed_findings: int = 0
    findings: list[StaleFinding]
    # Stale pipelines without a freshness rule, against their learned gap between changes.
    learned_findings: list[LoggedLearnedFinding] = []


CANDIDATES = text(f"""
SELECT c.* FROM (
    SELECT p.id, p.name AS pipeline_name,
           GREATEST(p.last_target_insert, p.last_target_update, p.last_target_soft_delete)
               AS last_dml,
           {rule_columns_sql()}
    FROM pipeline p JOIN pipeline_type t ON t.id = p.pipeline_type_id
    WHERE p.active
) c
WHERE c.last_dml IS NOT NULL
ORDER BY c.id
""")


def judge(row: dict[str, Any], now: datetime) -> Stale | None:
    """The finding for one pipeline row (with rule columns and last_dml), or None when fresh."""
    last_dml: datetime | None = row["last_dml"]
    if last_dml is None:
        return None
    child, parent = split_row(row)
    rule = resolve("freshness", child, parent)
    if rule is None:
        return None
    deadline = rule.deadline(last_dml)
    if not deadline < now:
        return None
    return Stale(
        pipeline_id=row["id"],
        pipeline_name=row["pipeline_name"],
        last_dml_timestamp=last_dml,
        deadline=deadline,
        lag_seconds=(now - last_dml).total_seconds(),
        threshold_seconds=(deadline - last_dml).total_seconds(),
        freshness_number=rule.number,
        freshness_datepart=rule.datepart,
        used_child_config=rule.used_child_config,
    )


# One array per column, unnested: a constant number of parameters (asyncpg allows 32,767, a
# multi-row VALUES of 10,000 findings needs 70,000) and one cached prepared statement.
LOG_FINDINGS = text("""
INSERT INTO freshness_pipeline_log (pipeline_id, last_dml_timestamp, freshness_number,
    freshness_datepart, used_child_config, evaluation_timestamp, created_at)
SELECT f.*, :now, :now FROM unnest(
    CAST(:pipeline_id AS bigint[]), CAST(:last_dml_timestamp AS timestamptz[]),
    CAST(:freshness_number AS integer[]), CAST(:freshness_datepart AS text[]),
    CAST(:used_child_config AS boolean[])) AS f
ON CONFLICT (pipeline_id, last_dml_timestamp) DO NOTHING
RETURNING pipeline_id
""")
FINDINGS = FindingLog(
    LOG_FINDINGS,
    columns=(
        "pipeline_id",
        "last_dml_timestamp",
        "freshness_number",
        "freshness_datepart",
        "used_child_config",
    ),
    key="pipeline_id",
)


def evidence(stale: Stale, now: datetime) -> tuple[datetime, datetime]:
    """A write reported anywhere after the last known one would make the pipeline fresh.
    Watcher blind in there (`watcher.availability`) → unknown, not stale, until caught up."""
    return stale.last_dml_timestamp, now


async def check(
    conn: AsyncConnection, now: datetime, policy: CatchUpPolicy | None = None
) -> Report:
    rows = [dict(r._mapping) for r in await conn.execute(CANDIDATES)]
    gate = await load_gate(conn, now, policy or CatchUpPolicy())
    found = [f for r in rows if (f := judge(r, now))]
    kept, held = gate.split(found, lambda f: evidence(f, now))
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

    return await run_check(services, "freshness", checked, checked="pipelines_checked")


@router.post("/freshness", scope="admin", response=FreshnessReport)
async def freshness_check(request: Request) -> dict[str, Any]:
    """Run the freshness check now; returns stale pipelines (new and already logged)."""
    services = services_of(request)
    report = await run(services)
    return report | {"learned_findings": await learned_findings(services, "stale")}


def setup(services: Services) -> None:
    schedule(
        services, "freshness", lambda: run(services), services.settings.freshness_interval_seconds
    )
