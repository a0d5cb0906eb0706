"""Incidents as the API and the metrics show them: root, problems, impacted pipelines and
datasets with their depth, acknowledgement, and a one-line summary.

A dataset (address) is impacted when the root or an impacted pipeline writes it; its depth is
the depth of the shallowest such pipeline (the root's own targets are at depth 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from watcher.incidents.model import ImpactRecord, Incident, ProblemKind
from watcher.incidents.summary import name_list, summarize

INCIDENTS = text("""
SELECT n.*, p.name AS root_pipeline FROM incident n JOIN pipeline p ON p.id = n.root_pipeline_id
WHERE n.id = ANY(CAST(:ids AS bigint[])) ORDER BY n.id DESC
""")
IMPACT = text("""
SELECT i.*, p.name AS pipeline FROM incident_impact i JOIN pipeline p ON p.id = i.pipeline_id
WHERE i.incident_id = ANY(CAST(:ids AS bigint[])) ORDER BY i.id
""")
TARGETS = text("""
SELECT DISTINCT l.pipeline_id, a.id AS address_id, a.name AS address
FROM address_lineage l JOIN address a ON a.id = l.target_address_id
WHERE l.pipeline_id = ANY(CAST(:pipelines AS bigint[]))
""")
# Open incidents and those resolved since `since`, newest first.
LIST = text("""
SELECT id FROM incident WHERE resolved_at IS NULL OR resolved_at >= :since
ORDER BY id DESC LIMIT :limit
""")
OPEN_IDS = text("SELECT id FROM incident WHERE resolved_at IS NULL ORDER BY id")
PENDING = text("""
SELECT g.pipeline_id, p.name AS pipeline, g.kind, g.from_incident_id, g.due_at,
       r.name AS root_pipeline
FROM incident_pending g JOIN pipeline p ON p.id = g.pipeline_id
JOIN incident n ON n.id = g.from_incident_id JOIN pipeline r ON r.id = n.root_pipeline_id
ORDER BY g.pipeline_id, g.kind
""")


def _impacted(rows: Sequence[Any]) -> list[dict[str, Any]]:
    by_pipeline: dict[int, dict[str, Any]] = {}
    for row in rows:
        if row.depth == 0:
            continue
        view = by_pipeline.setdefault(
            row.pipeline_id,
            {
                "pipeline_id": row.pipeline_id,
                "pipeline": row.pipeline,
                "depth": row.depth,
                "problems": [],
                "since": row.started_at,
                "active": False,
            },
        )
        view["depth"] = min(view["depth"], row.depth)
        view["since"] = min(view["since"], row.started_at)
        if row.kind not in view["problems"]:
            view["problems"].append(row.kind)
        view["active"] = view["active"] or row.detached_at is None
    return sorted(by_pipeline.values(), key=lambda v: (v["depth"], v["pipeline"]))


def _incident(row: Any, impact: Sequence[Any]) -> Incident:
    def record(r: Any) -> ImpactRecord:
        return ImpactRecord(
            r.pipeline_id, ProblemKind(r.kind), r.depth, r.started_at, r.attached_at
        )

    return Incident(
        id=row.id,
        root_pipeline_id=row.root_pipeline_id,
        started_at=row.started_at,
        opened_at=row.opened_at,
        active=tuple(record(r) for r in impact if r.detached_at is None),
        history=tuple(record(r) for r in impact if r.detached_at is not None),
        resolved_at=row.resolved_at,
    )


async def incidents(conn: AsyncConnection, ids: Sequence[int]) -> list[dict[str, Any]]:
    """The views of the incidents `ids` (newest first; unknown ids are left out)."""
    if not ids:
        return []
    params = {"ids": list(ids)}
    rows = list(await conn.execute(INCIDENTS, params))
    impact: dict[int, list[Any]] = {}
    for r in await conn.execute(IMPACT, params):
        impact.setdefault(r.incident_id, []).append(r)
    depths: dict[int, dict[int, int]] = {}  # incident → pipeline → depth (root: 0)
    for row in rows:
        depths[row.id] = {row.root_pipeline_id: 0}
        for v in _impacted(impact.get(row.id, [])):
            depths[row.id][v["pipeline_id"]] = v["depth"]
    pipelines = sorted({p for d in depths.values() for p in d})
    targets: dict[int, list[tuple[int, str]]] = {}
    for t in await conn.execute(TARGETS, {"pipelines": pipelines}):
        targets.setdefault(t.pipeline_id, []).append((t.address_id, t.address))
    return [_view(row, impact.get(row.id, []), depths[row.id], targets) for row in rows]


def _view(
    row: Any,
    impact: list[Any],
    depths: dict[int, int],
    targets: dict[int, list[tuple[int, str]]],
) -> dict[str, Any]:
    impacted = _impacted(impact)
    addresses: dict[int, dict[str, Any]] = {}
    for pipeline, depth in depths.items():
        for address_id, name in targets.get(pipeline, []):
            seen = addresses.get(address_id)
            if seen is None or depth < seen["depth"]:
                addresses[address_id] = {"address_id": address_id, "address": name, "depth": depth}
    names = {row.root_pipeline_id: row.root_pipeline} | {
        v["pipeline_id"]: v["pipeline"] for v in impacted
    }
    incident = _incident(row, impact)
    summary = summarize(incident, names)
    if not incident.is_open:
        summary = f"resolved: {summary.split(' — ')[0]}; impacted " + name_list(
            (v["pipeline"] for v in impacted), "pipeline"
        )
    return {
        "id": row.id,
        "status": "open" if row.resolved_at is None else "resolved",
        "root_pipeline_id": row.root_pipeline_id,
        "root_pipeline": row.root_pipeline,
        "problems": [
            {
                "kind": r.kind,
                "started_at": r.started_at,
                "detail": r.detail,
                "active": r.detached_at is None,
            }
            for r in impact
            if r.depth == 0
        ],
        "started_at": row.started_at,
        "opened_at": row.opened_at,
        "resolved_at": row.resolved_at,
        "promoted_from_id": row.promoted_from_id,
        "acknowledged_by": row.acknowledged_by,
        "acknowledged_at": row.acknowledged_at,
        "impacted_count": sum(1 for v in impacted if v["active"] or row.resolved_at is not None),
        "impacted_pipelines": impacted,
        "impacted_addresses": sorted(addresses.values(), key=lambda a: (a["depth"], a["address"])),
        "summary": summary,
    }


async def listing(conn: AsyncConnection, since: datetime, limit: int) -> list[dict[str, Any]]:
    ids = [r.id for r in await conn.execute(LIST, {"since": since, "limit": limit})]
    return await incidents(conn, ids)


async def pending(conn: AsyncConnection) -> list[Any]:
    return list(await conn.execute(PENDING))
