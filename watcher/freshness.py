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
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request

from watcher.database import transaction
from watcher.routing import Router
from watcher.rules import resolve, rule_columns_sql, split_row
from watcher.schema import freshness_pipeline_log as log_table
from watcher.services import Services, services_of

log = logging.getLogger("watcher.freshness")
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


_LOGGED = (
    "pipeline_id",
    "last_dml_timestamp",
    "freshness_number",
    "freshness_datepart",
    "used_child_config",
)


async def check(conn: AsyncConnection, now: datetime) -> dict[str, Any]:
    rows = [dict(r._mapping) for r in await conn.execute(CANDIDATES)]
    stale = [f for r in rows if (f := judge(r, now)) is not None]
    inserted: set[int] = set()
    if stale:
        values = [
            {k: getattr(f, k) for k in _LOGGED} | {"evaluation_timestamp": now, "created_at": now}
            for f in stale
        ]
        statement = (
            insert(log_table)
            .values(values)
            .on_conflict_do_nothing(index_elements=["pipeline_id", "last_dml_timestamp"])
            .returning(log_table.c.pipeline_id)
        )
        inserted = set((await conn.execute(statement)).scalars())
    findings = [asdict(f) | {"newly_logged": f.pipeline_id in inserted} for f in stale]
    return {
        "status": "completed",
        "evaluated_at": now,
        "pipelines_checked": len(rows),
        "new_findings": len(inserted),
        "findings": findings,
    }


async def run(services: Services) -> dict[str, Any]:
    now = services.clock.now()
    async with transaction(services.engine) as conn:
        result = await check(conn, now)
    log.info(
        "freshness check",
        extra={
            "checked": result["pipelines_checked"],
            "stale": len(result["findings"]),
            "new": result["new_findings"],
        },
    )
    return result


@router.post("/freshness", scope="admin")
async def freshness_check(request: Request) -> dict[str, Any]:
    """Run the freshness check now; returns stale pipelines (new and already logged)."""
    return await run(services_of(request))


def setup(services: Services) -> None:
    async def job() -> None:
        await run(services)

    services.scheduler.add_job(
        "freshness", job, seconds=services.settings.freshness_interval_seconds
    )
