"""Collectors that read state at scrape time: the scheduler, the pool, the snapshot's age.

Two sources, one registry (`services.registry`, injected so tests use a fresh one): the
event-fed families of `watcher.metrics.counters`, and state read from memory at scrape time
(here, and the per-pipeline snapshot in `watcher.metrics.store`, refreshed by the
`metrics_snapshot` job on every replica so any replica can be scraped) — a scrape never
queries the database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from watcher.metrics.counters import Metrics
from watcher.metrics.snapshot import Snapshot
from watcher.metrics.store import SnapshotStore
from watcher.scheduler import Scheduler
from watcher.services import Services


class _Union(Collector):
    """Several collectors as one: `services.registry` reads the exposed registry and the
    per-pipeline execution counters together."""

    def __init__(self, *collectors: Collector) -> None:
        self._collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for collector in self._collectors:
            yield from collector.collect()


class SchedulerCollector(Collector):
    """Leadership, job intervals and last successes, read from memory at scrape time.

    A job that has not succeeded since this process started reports the start time as its
    last success, so "time since last success" is meaningful from the first scrape and a
    job that never succeeds trips `WatcherSchedulerStalled` instead of staying invisible.
    Reading `scheduler.is_leader` directly (rather than remembering `LeadershipChanged`
    events) means the gauge cannot drift from the scheduler's own view.
    """

    def __init__(self, scheduler: Scheduler, metrics: Metrics, started_at: float) -> None:
        self._scheduler = scheduler
        self._metrics = metrics
        self._started_at = started_at

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "watcher_scheduler_leader",
            "1 while this replica holds the scheduler leadership lock, else 0.",
            value=1 if self._scheduler.is_leader else 0,
        )
        interval = GaugeMetricFamily(
            "watcher_scheduler_job_interval_seconds",
            "How often the job is scheduled.",
            labels=["job", "leader_only"],
        )
        last_success = GaugeMetricFamily(
            "watcher_scheduler_job_last_success_timestamp_seconds",
            "When the job last succeeded on this replica (process start if it has not yet).",
            labels=["job"],
        )
        successes = self._metrics.job_last_success
        for job in list(self._scheduler.jobs.values()):
            interval.add_metric([job.name, str(job.leader_only).lower()], job.seconds)
            last_success.add_metric([job.name], successes.get(job.name, self._started_at))
        yield interval
        yield last_success


def pool_stats(services: Services) -> Callable[[], tuple[int, int, int]]:
    """(in use, idle, max) from the engine's pool: counters in memory, no connection used."""
    pool = services.engine.sync_engine.pool
    maximum = services.settings.db_pool_size + services.settings.db_max_overflow

    def read() -> tuple[int, int, int]:
        in_use = getattr(pool, "checkedout", lambda: 0)()
        idle = getattr(pool, "checkedin", lambda: 0)()
        return in_use, idle, maximum

    return read


class SnapshotCollector(Collector):
    """Live families about the snapshot (age) and the connection pool (memory only)."""

    def __init__(
        self,
        store: SnapshotStore,
        now: Callable[[], datetime],
        pool_stats: Callable[[], tuple[int, int, int]] | None = None,
    ) -> None:
        self._store = store
        self._now = now
        self._pool_stats = pool_stats

    def collect(self) -> Iterator[Metric]:
        yield from self._pool_families()
        snapshot = self._store.current
        if snapshot is None:
            return
        yield from _snapshot_families(snapshot, self._now())

    def _pool_families(self) -> Iterator[Metric]:
        if self._pool_stats is None:
            return
        in_use, idle, maximum = self._pool_stats()
        connections = GaugeMetricFamily(
            "watcher_db_pool_connections",
            "Database connections held by this replica's pool, by status.",
            labels=["status"],
        )
        connections.add_metric(["in_use"], in_use)
        connections.add_metric(["idle"], idle)
        yield connections
        yield GaugeMetricFamily(
            "watcher_db_pool_max_connections",
            "Most connections the pool may open (pool size + max overflow).",
            value=maximum,
        )


def _snapshot_families(snapshot: Snapshot, now: datetime) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "watcher_metrics_snapshot_timestamp_seconds",
        "When the per-pipeline snapshot behind the watcher_pipeline_* families was taken.",
        value=snapshot.taken_at.timestamp(),
    )
    yield GaugeMetricFamily(
        "watcher_metrics_snapshot_age_seconds",
        "Age of the per-pipeline snapshot at scrape time.",
        value=max(0.0, (now - snapshot.taken_at).total_seconds()),
    )
    yield GaugeMetricFamily(
        "watcher_metrics_snapshot_duration_seconds",
        "Time the last snapshot refresh spent querying PostgreSQL.",
        value=snapshot.duration_seconds,
    )
