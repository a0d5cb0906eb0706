"""What every check shares: log its findings once, report the new ones, run on a schedule.

A check is a pure `judge(row, now) -> Finding | None` over candidate rows plus a `FindingLog`:
an `INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING RETURNING key` whose arrays are the
findings' `columns`. The rows it returns are the findings logged for the first time; the
others were already logged by an earlier run (or by another replica), so each finding is
reported as new exactly once, whichever run finds it first.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import TextClause
from sqlalchemy.ext.asyncio import AsyncConnection

from watcher.db.engine import transaction
from watcher.events import FindingsSuppressed
from watcher.services import Services

log = logging.getLogger("watcher.checks")

Report = dict[str, Any]


def as_dict(finding: object) -> dict[str, Any]:
    """A finding dataclass as a dict, shallow: its values are immutable, and
    `dataclasses.asdict` deep-copies each one."""
    return {f.name: getattr(finding, f.name) for f in fields(finding)}  # type: ignore[arg-type]


@dataclass(frozen=True)
class FindingLog:
    """The log statement of one check: `columns` are the finding attributes it takes as
    arrays (plus `:now`), `key` the attribute its RETURNING clause gives back."""

    statement: TextClause
    columns: tuple[str, ...]
    key: str

    async def write(
        self, conn: AsyncConnection, findings: Sequence[object], now: datetime
    ) -> list[dict[str, Any]]:
        """Log `findings` once; each comes back as a dict with `newly_logged`."""
        inserted: set[Any] = set()
        if findings:
            params: dict[str, Any] = {
                column: [getattr(f, column) for f in findings] for column in self.columns
            }
            result = await conn.execute(self.statement, params | {"now": now})
            inserted = set(result.scalars())
        return [as_dict(f) | {"newly_logged": getattr(f, self.key) in inserted} for f in findings]


def new_count(findings: Sequence[dict[str, Any]]) -> int:
    return sum(1 for f in findings if f["newly_logged"])


async def run_check(
    services: Services,
    name: str,
    check: Callable[[AsyncConnection, datetime], Awaitable[Report]],
    checked: str,
) -> Report:
    """Run `check` in one transaction at one `now` and log a summary line.

    `checked` names the report's count of candidates (pipelines or executions)."""
    now = services.clock.now()
    async with transaction(services.engine) as conn:
        report = await check(conn, now)
    log.info(
        f"{name} check",
        extra={
            "checked": report[checked],
            "found": len(report["findings"]),
            "new": report["new_findings"],
            "suppressed": report.get("suppressed_findings", 0),
        },
    )
    if report.get("suppressed_findings"):
        label = name.replace(" ", "_")
        services.events.emit(FindingsSuppressed(label, "ingest_gap", report["suppressed_findings"]))
    return report


def schedule(
    services: Services, name: str, job: Callable[[], Awaitable[object]], seconds: float
) -> None:
    """Run `job` every `seconds` on the leader (the scheduler only runs jobs while leading)."""

    async def run() -> None:
        await job()

    services.scheduler.add_job(name, run, seconds=seconds)
