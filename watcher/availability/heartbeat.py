"""The heartbeat job (every replica), the blind windows the checks load, and their metrics.

Every replica runs `ingest_heartbeat` every `ingest_heartbeat_interval_seconds`, leader or
not (any replica may be the one ingesting): one upsert of its current segment row, carrying
the executions it ingested since the last beat, and a prune of rows older than `RETENTION`.
A replica whose last successful beat is older than the tolerance starts a new segment, so a
database outage (the process lived, but could not write) is a hole like a crash.

The checks call `load_gate(conn, now, policy)`: the segments that can still matter (those
that beat within the catch-up, plus the latest older one) are a few index rows whatever the
history, and `windows.blind_windows` turns them into windows.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from watcher.availability.windows import Gate, Segment, blind_windows
from watcher.clock import Clock
from watcher.config import Settings
from watcher.db.engine import transaction
from watcher.events import ExecutionEnded, ExecutionStarted, FindingsSuppressed
from watcher.routing import Router
from watcher.services import Services

log = logging.getLogger("watcher.availability")
router = Router()

# Heartbeats missed in a row before a replica counts as not ingesting.
TOLERANCE_BEATS = 3
# Segments older than this are pruned: a window that old has long been caught up.
RETENTION = timedelta(days=7)


@dataclass(frozen=True)
class CatchUpPolicy:
    """How long after a window evidence in it stays unknown, and the heartbeat tolerance."""

    catch_up: timedelta = timedelta(seconds=600)
    tolerance: timedelta = timedelta(seconds=5 * TOLERANCE_BEATS)

    @classmethod
    def of(cls, settings: Settings) -> CatchUpPolicy:
        return cls(
            catch_up=timedelta(seconds=settings.ingest_catch_up_seconds),
            tolerance=timedelta(seconds=settings.ingest_heartbeat_interval_seconds)
            * TOLERANCE_BEATS,
        )


DEFAULT_POLICY = CatchUpPolicy()

SEGMENTS = text("""
SELECT segment_start, beat_at FROM ingest_heartbeat WHERE beat_at >= :since
UNION ALL
(SELECT segment_start, beat_at FROM ingest_heartbeat WHERE beat_at < :since
 ORDER BY beat_at DESC LIMIT 1)
""")


async def load_gate(
    conn: AsyncConnection, now: datetime, policy: CatchUpPolicy = DEFAULT_POLICY
) -> Gate:
    """The gate of the checks at `now`: the windows a decision could still fall in."""
    since = now - policy.catch_up - policy.tolerance
    rows = await conn.execute(SEGMENTS, {"since": since})
    segments = [Segment(r.segment_start, r.beat_at) for r in rows]
    return Gate(blind_windows(segments, now, policy.tolerance), now, policy.catch_up)


BEAT = text("""
INSERT INTO ingest_heartbeat (replica, segment_start, beat_at, ingested)
VALUES (:replica, :segment_start, :now, :ingested)
ON CONFLICT (replica, segment_start) DO UPDATE
SET beat_at = GREATEST(ingest_heartbeat.beat_at, EXCLUDED.beat_at),
    ingested = ingest_heartbeat.ingested + EXCLUDED.ingested
""")
PRUNE = text("DELETE FROM ingest_heartbeat WHERE beat_at < :before")


class Heartbeat:
    """This replica's heartbeat: its segment, the ingest count and the latest gate."""

    def __init__(self, engine: AsyncEngine, clock: Clock, settings: Settings) -> None:
        self.engine = engine
        self.clock = clock
        self.policy = CatchUpPolicy.of(settings)
        self.replica = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.started_at = clock.now()
        self.segment_start: datetime | None = None
        self.last_beat: datetime | None = None
        self.pending = 0  # executions ingested since the last written beat
        self.gate: Gate | None = None

    def count(self, event: object) -> None:
        self.pending += 1

    async def beat(self) -> None:
        now = self.clock.now()
        last = self.last_beat
        if last is None or not timedelta(0) <= now - last <= self.policy.tolerance:
            self.segment_start = now  # a new segment: the previous one was interrupted
        ingested = self.pending
        params = {
            "replica": self.replica,
            "segment_start": self.segment_start,
            "now": now,
            "ingested": ingested,
        }
        async with transaction(self.engine) as conn:
            await conn.execute(BEAT, params)
            await conn.execute(PRUNE, {"before": now - RETENTION})
            gate = await load_gate(conn, now, self.policy)
        self.pending -= ingested
        self.last_beat = now
        self.gate = gate


class AvailabilityCollector(Collector):
    """The ingestion availability families, from memory (a scrape during a database outage
    still says how long this replica has not beaten)."""

    def __init__(self, heartbeat: Heartbeat) -> None:
        self._heartbeat = heartbeat

    def collect(self) -> Iterator[Metric]:
        hb = self._heartbeat
        now = hb.clock.now()
        since = hb.last_beat or hb.started_at
        yield GaugeMetricFamily(
            "watcher_ingest_heartbeat_age_seconds",
            "Seconds since this replica last recorded its ingestion heartbeat (since its "
            "start if it has not yet).",
            value=max(0.0, (now - since).total_seconds()),
        )
        gate = hb.gate
        last = gate.last_window() if gate is not None else None
        gap = last.seconds(gate.now) if last is not None and gate is not None else None
        yield GaugeMetricFamily(
            "watcher_ingest_gap_seconds",
            "Length of the latest window in which no replica was ingesting (0 if none in "
            "the retained heartbeats).",
            value=gap or 0.0,
        )
        yield GaugeMetricFamily(
            "watcher_ingest_catching_up",
            "1 while the checks hold back findings whose evidence lies in a window no "
            "replica was ingesting (the window is open or its catch-up is not over).",
            value=1 if gate is not None and gate.catching_up else 0,
        )
        yield GaugeMetricFamily(
            "watcher_ingest_catch_up_seconds",
            "How long after a blind window its evidence stays unknown to the checks.",
            value=hb.policy.catch_up.total_seconds(),
        )


def suppressed_counter(registry: CollectorRegistry) -> Counter:
    return Counter(
        "watcher_checks_suppressed",
        "Findings the checks held back because their evidence lay in a window no replica "
        "was ingesting, by check and reason.",
        ["check", "reason"],
        registry=registry,
    )


def setup(services: Services) -> None:
    """Schedule the heartbeat on every replica and export its families (after metrics)."""
    heartbeat = Heartbeat(services.engine, services.clock, services.settings)
    services.events.subscribe(ExecutionStarted, heartbeat.count)
    services.events.subscribe(ExecutionEnded, heartbeat.count)
    exposed = services.telemetry.exposed
    exposed.register(AvailabilityCollector(heartbeat))
    suppressed = suppressed_counter(exposed)

    def on_suppressed(event: FindingsSuppressed) -> None:
        suppressed.labels(event.check, event.reason).inc(event.count)

    services.events.subscribe(FindingsSuppressed, on_suppressed)
    services.scheduler.add_job(
        "ingest_heartbeat",
        heartbeat.beat,
        seconds=services.settings.ingest_heartbeat_interval_seconds,
        leader_only=False,
    )
