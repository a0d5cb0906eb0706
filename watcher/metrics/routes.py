"""`GET /metrics`, the negotiated exposition of every family, and the `metrics_snapshot` job
that refreshes the snapshot on every replica."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.exposition import choose_encoder
from starlette.requests import Request
from starlette.responses import Response

from watcher.db.driver import raw_autocommit
from watcher.metrics.collectors import SchedulerCollector, SnapshotCollector, _Union, pool_stats
from watcher.metrics.counters import Metrics
from watcher.metrics.snapshot import load_snapshot
from watcher.metrics.store import SnapshotStore, Telemetry
from watcher.routing import Router
from watcher.services import Services, services_of

router = Router()


async def refresh_snapshot(services: Services, store: SnapshotStore) -> None:
    async with raw_autocommit(services.engine) as db:
        async with db.conn.transaction(isolation="repeatable_read", readonly=True):
            snapshot = await load_snapshot(db, services.clock.now())
    store.replace(snapshot)
    services.telemetry.metrics.retain_pipelines({p.name for p in snapshot.pipelines})
    # Encode the scrapers' format now, off the event loop, so the next scrape finds it ready.
    await asyncio.to_thread(store.encoded, store.openmetrics)


def setup(services: Services) -> None:
    """Register the families and the collector, subscribe to events, schedule the snapshot."""
    exposed = CollectorRegistry(auto_describe=False)  # encoded by prometheus_client
    metrics = Metrics(exposed, include_pipeline_counters=False)
    metrics.subscribe(services)
    store = SnapshotStore()
    exposed.register(SchedulerCollector(services.scheduler, metrics, time.time()))
    exposed.register(SnapshotCollector(store, services.clock.now, pool_stats(services)))
    ProcessCollector(registry=exposed)  # process_* (CPU, memory, fds) for the health board
    services.registry.register(_Union(exposed, metrics.pipelines))
    services.telemetry = Telemetry(metrics, exposed, store)

    async def snapshot_job() -> None:
        await refresh_snapshot(services, store)

    # Every replica keeps its own snapshot (not leader-only) so any of them can be scraped.
    services.scheduler.add_job(
        "metrics_snapshot",
        snapshot_job,
        seconds=services.settings.metrics_snapshot_interval_seconds,
        leader_only=False,
    )


@router.get("/metrics", scope="read", summary="Prometheus metrics (text or OpenMetrics)")
async def metrics_endpoint(request: Request) -> Response:
    services = services_of(request)
    # Encoding can be CPU work (a first OpenMetrics scrape after a refresh): off the loop.
    body, content_type = await asyncio.to_thread(
        exposition, services, request.headers.get("accept", "")
    )
    return Response(body, media_type=content_type)


def exposition(services: Services, accept: str) -> tuple[bytes, str]:
    """The registry's families in the negotiated format, the per-pipeline ones encoded by
    Watcher itself: the execution counters from their kept prefixes, the snapshot's cached.

    `services.registry` holds every family (tests read samples from it); what scrapes
    encode through prometheus_client is `exposed`, the same collectors without the
    per-pipeline execution counters, which `PipelineCounters.encode` renders instead.
    """
    encoder, content_type = choose_encoder(accept)
    openmetrics = content_type.startswith("application/openmetrics-text")
    telemetry = services.telemetry
    live = encoder(telemetry.exposed).removesuffix(b"# EOF\n")
    live += telemetry.metrics.pipelines.encode(openmetrics)
    store = telemetry.store
    # OpenMetrics ends with one "# EOF": the snapshot's part brings it.
    return live + store.encoded(openmetrics), content_type
