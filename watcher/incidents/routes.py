"""The incidents feature: the leader job placing problems into incidents, the pipeline graph
and incident routes, and the series Prometheus alerts on.

The job (`incidents`, leader-only, every `incidents_interval_seconds`) runs in one transaction
under `locks.INCIDENTS`: load the graph and the state, gather the active problems, `step`,
write the changes. Alerting is Prometheus' and Alertmanager's (monitoring/rules/incidents.yml,
alertmanager/alertmanager.yml) from the series `IncidentCollector` exports on every replica.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import text
from starlette.requests import Request

from watcher.db import locks
from watcher.db.engine import transaction
from watcher.errors import Conflict, InvalidInput, NotFound
from watcher.fields import Body
from watcher.incidents import problems, store, views
from watcher.incidents.attachment import step
from watcher.incidents.metrics import Exported, IncidentCollector, IncidentSeries
from watcher.lineage import DepthQuery
from watcher.routing import Router, path_id
from watcher.services import Services, services_of

log = logging.getLogger("watcher.incidents")
router = Router("incidents")


# --- models ------------------------------------------------------------------------------


class RelatedPipeline(BaseModel):
    pipeline_id: int
    pipeline: str
    depth: int


class PipelineGraphView(BaseModel):
    pipeline_id: int
    pipeline: str
    upstream: list[RelatedPipeline] | None = None
    downstream: list[RelatedPipeline] | None = None


class RootProblem(BaseModel):
    kind: str
    started_at: datetime
    detail: str
    active: bool


class ImpactedPipeline(BaseModel):
    pipeline_id: int
    pipeline: str
    depth: int
    problems: list[str]
    since: datetime
    active: bool


class ImpactedAddress(BaseModel):
    address_id: int
    address: str
    depth: int


class IncidentView(BaseModel):
    id: int
    status: Literal["open", "resolved"]
    root_pipeline_id: int
    root_pipeline: str
    problems: list[RootProblem]
    started_at: datetime
    opened_at: datetime
    resolved_at: datetime | None
    promoted_from_id: int | None
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    impacted_count: int
    impacted_pipelines: list[ImpactedPipeline]
    impacted_addresses: list[ImpactedAddress]
    summary: str


class IncidentsQuery(Body):
    recent_hours: int = Field(default=24, ge=0, le=8784)
    limit: int = Field(default=100, ge=1, le=1000)


class Acknowledge(Body):
    by: str | None = Field(default=None, min_length=1, max_length=200)
    """Who acknowledges; defaults to the name of the API token used."""


class IncidentsReport(BaseModel):
    status: str
    evaluated_at: datetime
    problems: int
    changes: dict[str, int]
    open_incidents: int


# --- the job -----------------------------------------------------------------------------


async def run(services: Services) -> dict[str, Any]:
    settings = services.settings
    now = services.clock.now()
    async with transaction(services.engine) as conn:
        await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": locks.INCIDENTS})
        graph = await store.load_graph(conn)
        state = await store.load_state(conn)
        found = await problems.gather(
            conn, now, timedelta(minutes=settings.incident_lookback_minutes)
        )
        grace = timedelta(seconds=settings.incident_grace_seconds)
        state, changes = step(state, found, graph, now, grace)
        await store.write(conn, state, changes, now)
    counts: dict[str, int] = {}
    for change in changes:
        counts[change.kind.value] = counts.get(change.kind.value, 0) + 1
    log.info("incidents", extra={"problems": len(found), "open": len(state.incidents)} | counts)
    return {
        "status": "completed",
        "evaluated_at": now,
        "problems": len(found),
        "changes": counts,
        "open_incidents": len(state.incidents),
    }


async def refresh_series(services: Services, collector: IncidentCollector) -> None:
    async with transaction(services.engine) as conn:
        ids = [r.id for r in await conn.execute(views.OPEN_IDS)]
        shown = await views.incidents(conn, ids)
        waiting = await views.pending(conn)
    series = tuple(
        IncidentSeries(
            incident_id=str(v["id"]),
            root_pipeline=v["root_pipeline"],
            problems=tuple(sorted({p["kind"] for p in v["problems"] if p["active"]})),
            started_at=v["started_at"].timestamp(),
            impacted=tuple(p["pipeline"] for p in v["impacted_pipelines"] if p["active"]),
            datasets=len(v["impacted_addresses"]),
            summary=v["summary"],
        )
        for v in sorted(shown, key=lambda v: v["id"])
    )
    impacted_by = {
        (p, s.root_pipeline, s.incident_id, "attached") for s in series for p in s.impacted
    }
    impacted_by |= {
        (w.pipeline, w.root_pipeline, str(w.from_incident_id), "pending") for w in waiting
    }
    collector.current = Exported(series, tuple(sorted(impacted_by)))


# --- routes ------------------------------------------------------------------------------


async def _related(request: Request, query: DepthQuery, direction: str) -> dict[str, Any]:
    pipeline_id = path_id(request)
    async with transaction(services_of(request).engine) as conn:
        names = {r.id: r.name for r in await conn.execute(text("SELECT id, name FROM pipeline"))}
        if pipeline_id not in names:
            raise NotFound(f"pipeline {pipeline_id} not found")
        graph = await store.load_graph(conn)
    walk = graph.upstream if direction == "upstream" else graph.downstream
    related = walk(pipeline_id, query.depth)
    return {
        "pipeline_id": pipeline_id,
        "pipeline": names[pipeline_id],
        direction: [
            {"pipeline_id": p, "pipeline": names.get(p, f"#{p}"), "depth": d}
            for p, d in sorted(related.items(), key=lambda item: (item[1], names.get(item[0], "")))
        ],
    }


@router.get(
    "/pipeline/{id:int}/upstream", scope="read", query=DepthQuery, response=PipelineGraphView
)
async def upstream(request: Request, query: DepthQuery) -> dict[str, Any]:
    """Pipelines upstream of this one (writing what it reads, or parents of its runs), with
    their depth in pipelines (`?depth=N` limits)."""
    return await _related(request, query, "upstream")


@router.get(
    "/pipeline/{id:int}/downstream", scope="read", query=DepthQuery, response=PipelineGraphView
)
async def downstream(request: Request, query: DepthQuery) -> dict[str, Any]:
    """Pipelines downstream of this one, with their depth in pipelines (`?depth=N` limits)."""
    return await _related(request, query, "downstream")


@router.get("/incidents", scope="read", query=IncidentsQuery, response=list[IncidentView])
async def list_incidents(request: Request, query: IncidentsQuery) -> list[dict[str, Any]]:
    """Open incidents and those resolved in the last `recent_hours`, newest first."""
    services = services_of(request)
    since = services.clock.now() - timedelta(hours=query.recent_hours)
    async with transaction(services.engine) as conn:
        return await views.listing(conn, since, query.limit)


async def _one(request: Request, incident_id: int) -> dict[str, Any]:
    async with transaction(services_of(request).engine) as conn:
        found = await views.incidents(conn, [incident_id])
    if not found:
        raise NotFound(f"incident {incident_id} not found")
    return found[0]


@router.get("/incidents/{id:int}", scope="read", response=IncidentView)
async def get_incident(request: Request) -> dict[str, Any]:
    """One incident, open or resolved, with every problem it held."""
    return await _one(request, path_id(request))


ACKNOWLEDGE = text("""
UPDATE incident SET acknowledged_by = :by, acknowledged_at = :at
WHERE id = :id AND acknowledged_by IS NULL RETURNING id
""")


@router.post(
    "/incidents/{id:int}/acknowledge", scope="ingest", body=Acknowledge, response=IncidentView
)
async def acknowledge(request: Request, body: Acknowledge) -> dict[str, Any]:
    """Record who acknowledged the incident and when; the first acknowledgement stays (409)."""
    incident_id = path_id(request)
    services = services_of(request)
    by = body.by or request.scope.get("watcher.token")
    if not by:
        raise InvalidInput.field(["body", "by"], "who acknowledges (no API token names them)")
    params = {"id": incident_id, "by": by, "at": services.clock.now()}
    async with transaction(services.engine) as conn:
        updated = (await conn.execute(ACKNOWLEDGE, params)).first()
        if updated is None:
            row = (
                await conn.execute(
                    text("SELECT acknowledged_by, acknowledged_at FROM incident WHERE id = :id"),
                    params,
                )
            ).first()
            if row is None:
                raise NotFound(f"incident {incident_id} not found")
            raise Conflict(
                f"incident {incident_id} was already acknowledged by {row.acknowledged_by} "
                f"at {row.acknowledged_at.isoformat()}"
            )
    return await _one(request, incident_id)


@router.post("/incidents/evaluate", scope="admin", response=IncidentsReport)
async def incidents_check(request: Request) -> dict[str, Any]:
    """Place the current problems into incidents now (the `incidents` job does it every minute)."""
    return await run(services_of(request))


def setup(services: Services) -> None:
    collector = IncidentCollector()
    services.telemetry.exposed.register(collector)

    async def job() -> None:
        await run(services)

    async def series() -> None:
        await refresh_series(services, collector)

    settings = services.settings
    if not settings.incidents_enabled:
        return
    services.scheduler.add_job("incidents", job, seconds=settings.incidents_interval_seconds)
    services.scheduler.add_job(
        "incidents_metrics",
        series,
        seconds=settings.metrics_snapshot_interval_seconds,
        leader_only=False,
    )
