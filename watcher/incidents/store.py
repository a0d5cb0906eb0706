"""Incidents in PostgreSQL: the pipeline graph and the engine's state in, its changes out.

The state is rebuilt from the tables on every run (open incidents with their active
problems, the pending orphans, the next id), so a leadership change loses nothing; `step` is
idempotent, so a run repeated after a crash writes nothing twice. Only the job writes, under
`locks.INCIDENTS` in one transaction.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from watcher.incidents.graph import PipelineGraph
from watcher.incidents.model import (
    Attached,
    Change,
    Detached,
    ImpactRecord,
    Incident,
    IncidentState,
    Opened,
    Pending,
    Problem,
    ProblemKind,
    Promoted,
    Resolved,
)

log = logging.getLogger("watcher.incidents")

LINEAGE = text("""
SELECT l.pipeline_id, l.source_address_id, l.target_address_id
FROM address_lineage l JOIN pipeline p ON p.id = l.pipeline_id WHERE p.active
""")
NESTING = text("""
SELECT n.parent_pipeline_id, n.child_pipeline_id FROM pipeline_nesting n
JOIN pipeline a ON a.id = n.parent_pipeline_id JOIN pipeline b ON b.id = n.child_pipeline_id
WHERE a.active AND b.active
""")


async def load_graph(conn: AsyncConnection) -> PipelineGraph:
    """The graph of active pipelines: address lineage (sources × targets) and nesting pairs.
    Its size is the declared lineage, never the execution history."""
    lineage = [(r[0], r[1], r[2]) for r in await conn.execute(LINEAGE)]
    nesting = [(r[0], r[1]) for r in await conn.execute(NESTING)]
    return PipelineGraph.build(lineage=lineage, nesting=nesting)


OPEN_INCIDENTS = text("SELECT * FROM incident WHERE resolved_at IS NULL ORDER BY id")
ACTIVE_IMPACT = text("""
SELECT i.* FROM incident_impact i JOIN incident n ON n.id = i.incident_id
WHERE n.resolved_at IS NULL AND i.detached_at IS NULL
""")
PENDING = text("SELECT * FROM incident_pending ORDER BY pipeline_id, kind")
NEXT_ID = text("SELECT COALESCE(max(id), 0) + 1 FROM incident")


def _record(row: Any) -> ImpactRecord:
    return ImpactRecord(
        pipeline_id=row.pipeline_id,
        kind=ProblemKind(row.kind),
        depth=row.depth,
        started_at=row.started_at,
        attached_at=row.attached_at,
        also_upstream=tuple(row.also_upstream),
    )


async def load_state(conn: AsyncConnection) -> IncidentState:
    active: dict[int, list[ImpactRecord]] = {}
    for row in await conn.execute(ACTIVE_IMPACT):
        active.setdefault(row.incident_id, []).append(_record(row))
    incidents = tuple(
        Incident(
            id=row.id,
            root_pipeline_id=row.root_pipeline_id,
            started_at=row.started_at,
            opened_at=row.opened_at,
            active=tuple(sorted(active.get(row.id, ()), key=lambda r: r.key)),
            promoted_from=row.promoted_from_id,
            acknowledged_by=row.acknowledged_by,
            acknowledged_at=row.acknowledged_at,
        )
        for row in await conn.execute(OPEN_INCIDENTS)
    )
    pending = tuple(
        Pending(
            r.pipeline_id, ProblemKind(r.kind), r.started_at, r.from_incident_id, r.depth, r.due_at
        )
        for r in await conn.execute(PENDING)
    )
    next_id = (await conn.execute(NEXT_ID)).scalar_one()
    return IncidentState(incidents, pending, int(next_id))


INSERT_INCIDENT = text("""
INSERT INTO incident (id, root_pipeline_id, started_at, opened_at, promoted_from_id)
VALUES (:id, :root, :started_at, :opened_at, :promoted_from)
""")
INSERT_IMPACT = text("""
INSERT INTO incident_impact (incident_id, pipeline_id, kind, depth, started_at, attached_at,
    also_upstream, detail)
VALUES (:incident_id, :pipeline_id, :kind, :depth, :started_at, :attached_at,
    CAST(:also_upstream AS bigint[]), :detail)
""")
DETACH = text("""
UPDATE incident_impact SET detached_at = :now, detach_reason = :reason
WHERE incident_id = :incident_id AND pipeline_id = :pipeline_id AND kind = :kind
  AND detached_at IS NULL
""")
RESOLVE = text("""
UPDATE incident SET resolved_at = :resolved_at WHERE id = :id AND resolved_at IS NULL
""")
DETACH_REST = text("""
UPDATE incident_impact SET detached_at = :now, detach_reason = 'cleared'
WHERE incident_id = :id AND detached_at IS NULL
""")
CLEAR_PENDING = text("DELETE FROM incident_pending")
INSERT_PENDING = text("""
INSERT INTO incident_pending (pipeline_id, kind, started_at, from_incident_id, depth, due_at)
VALUES (:pipeline_id, :kind, :started_at, :from_incident_id, :depth, :due_at)
""")


def _record_in(state: IncidentState, incident_id: int, problem: Problem) -> ImpactRecord | None:
    incident = state.incident(incident_id)
    if incident is None:
        return None
    return next((r for r in incident.active if r.key == problem.key), None)


async def write(
    conn: AsyncConnection, state: IncidentState, changes: list[Change], now: datetime
) -> None:
    """Persist `changes` (in their order) and the new `state`'s pending orphans."""
    details: dict[tuple[int, str], str] = {}
    for change in changes:
        if isinstance(change, Opened | Promoted):
            incident = change.incident
            await conn.execute(
                INSERT_INCIDENT,
                {
                    "id": incident.id,
                    "root": incident.root_pipeline_id,
                    "started_at": incident.started_at,
                    "opened_at": incident.opened_at,
                    "promoted_from": incident.promoted_from,
                },
            )
            details |= {p.key: p.detail for p in change.problems}
            for record in incident.active:
                await conn.execute(INSERT_IMPACT, _impact(incident.id, record, details))
            log.info(
                f"incident {change.kind.value}",
                extra={"incident_id": incident.id, "root_pipeline_id": incident.root_pipeline_id},
            )
        elif isinstance(change, Attached):
            details[change.problem.key] = change.problem.detail
            record = _record_in(state, change.incident_id, change.problem) or ImpactRecord(
                change.problem.pipeline_id,
                change.problem.kind,
                change.depth,
                change.problem.started_at,
                now,
                change.also_upstream,
            )
            await conn.execute(INSERT_IMPACT, _impact(change.incident_id, record, details))
        elif isinstance(change, Detached):
            await conn.execute(
                DETACH,
                {
                    "now": now,
                    "reason": change.reason.value,
                    "incident_id": change.incident_id,
                    "pipeline_id": change.pipeline_id,
                    "kind": change.problem_kind.value,
                },
            )
        elif isinstance(change, Resolved):
            resolved = change.incident
            await conn.execute(RESOLVE, {"id": resolved.id, "resolved_at": resolved.resolved_at})
            await conn.execute(DETACH_REST, {"id": resolved.id, "now": now})
            log.info(
                "incident resolved",
                extra={"incident_id": resolved.id, "root_pipeline_id": resolved.root_pipeline_id},
            )
    await conn.execute(CLEAR_PENDING)
    for p in state.pending:
        await conn.execute(
            INSERT_PENDING,
            {
                "pipeline_id": p.pipeline_id,
                "kind": p.kind.value,
                "started_at": p.started_at,
                "from_incident_id": p.from_incident_id,
                "depth": p.depth,
                "due_at": p.due_at,
            },
        )


def _impact(
    incident_id: int, record: ImpactRecord, details: dict[tuple[int, str], str]
) -> dict[str, Any]:
    return {
        "incident_id": incident_id,
        "pipeline_id": record.pipeline_id,
        "kind": record.kind.value,
        "depth": record.depth,
        "started_at": record.started_at,
        "attached_at": record.attached_at,
        "also_upstream": list(record.also_upstream),
        "detail": details.get(record.key, ""),
    }
