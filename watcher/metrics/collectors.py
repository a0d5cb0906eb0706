"""Prometheus metrics: request-path families fed by events, and `GET /metrics`.

Two sources, one registry (`services.registry`, injected so tests use a fresh one):
- counters and histograms below are incremented by event handlers, i.e. after the
  transaction that caused them committed (`watcher.events`);
- per-pipeline state comes from the snapshot collector in `watcher.metrics.snapshot`,
  refreshed by the `metrics_snapshot` job on every replica (any replica can be scraped) and
  rendered from memory, so a scrape never queries the database.

Labels are bounded: pipelines, pipeline types, operations, statuses, route templates and job
names; never an execution id or free text. Per-pipeline series are the snapshot's and the
execution counters' (`PipelineCounters`), which drop a pipeline once it leaves the snapshot
(deactivated or deleted). The duration histogram stays by pipeline type: a dozen buckets per
pipeline would multiply the scrape; per pipeline, the snapshot has the last duration.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from watcher.events import (
    ExecutionEnded,
    ExecutionStarted,
    JobFinished,
    RequestFinished,
)
from watcher.metrics.exposition import (
    counter_header,
    encode_snapshot,
    escape_label_value,
    go_float,
)
from watcher.metrics.families import _pipeline_families
from watcher.metrics.snapshot import PIPELINES_DOC, Snapshot
from watcher.scheduler import Scheduler
from watcher.services import Services

# Pipelines run from seconds to a day; alerting thresholds sit in the minutes-to-hours range.
EXECUTION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 43200, 86400)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
JOB_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
_ROWS = (("insert", "inserts"), ("update", "updates"), ("soft_delete", "soft_deletes"))


@dataclass
class _Sums:
    """One counter family's values by label values (the pipeline first)."""

    name: str
    documentation: str
    labels: tuple[str, ...]
    values: dict[tuple[str, ...], float] = field(default_factory=dict)
    # Each series' `name{labels} ` once: a scrape then only formats the values.
    prefixes: dict[tuple[str, ...], str] = field(default_factory=dict)

    def prefix(self, key: tuple[str, ...]) -> str:
        found = self.prefixes.get(key)
        if found is None:
            pairs = sorted(zip(self.labels, key, strict=True))  # prometheus_client's order
            labels = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in pairs)
            found = self.prefixes[key] = f"{self.name}{{{labels}}} "
        return found


class PipelineCounters(Collector):
    """Execution counters labelled by pipeline: started, finished by status, rows by operation.

    Kept as plain sums and rendered by `collect()` rather than as prometheus_client Counters:
    every pipeline that ran adds up to seven series, encoded on every scrape (they move with
    every event, so unlike the snapshot they cannot be cached), and Counter children cost
    about three times as much to encode (a `_created` sample, an object and a lock each):
    ~760 ms against ~230 ms for 10,000 pipelines. A pipeline leaves with a key deletion.

    Events arrive on the event loop while scrapes collect in a worker thread: a lock guards
    the dictionaries, held only to update or copy them.
    """

    def __init__(self) -> None:
        self.started = _Sums(
            "watcher_executions_started_total",
            "Executions started, by pipeline and pipeline type.",
            ("pipeline", "pipeline_type"),
        )
        self.finished = _Sums(
            "watcher_executions_finished_total",
            "Executions ended, by pipeline, pipeline type and status (success, failure).",
            ("pipeline", "pipeline_type", "status"),
        )
        self.rows = _Sums(
            "watcher_execution_rows_total",
            "Rows reported by ended executions, by pipeline, pipeline type and DML operation.",
            ("pipeline", "pipeline_type", "operation"),
        )
        self._lock = threading.Lock()
        self._recent: set[str] = set()  # pipelines with an event since the last `retain`

    def inc(self, sums: _Sums, labels: tuple[str, ...], amount: float = 1.0) -> None:
        with self._lock:
            sums.values[labels] = sums.values.get(labels, 0.0) + amount
            self._recent.add(labels[0])

    def retain(self, active: Collection[str]) -> None:
        """Drop the series of pipelines neither in `active` nor counted since the last call.

        A snapshot is read before it is installed: a pipeline created and run meanwhile is
        missing from it, so its fresh series wait one more refresh before being judged.
        """
        with self._lock:
            keep = self._recent | set(active)
            self._recent = set()
            for sums in self._families():
                if any(key[0] not in keep for key in sums.values):
                    sums.values = {k: v for k, v in sums.values.items() if k[0] in keep}
                    sums.prefixes = {k: v for k, v in sums.prefixes.items() if k[0] in keep}

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            copies = [(sums, list(sums.values.items())) for sums in self._families()]
        for sums, items in copies:
            family = CounterMetricFamily(sums.name, sums.documentation, labels=sums.labels)
            for labels, value in items:
                family.add_metric(labels, value)
            yield family

    def encode(self, openmetrics: bool) -> bytes:
        """`collect()` as exposition text, byte for byte, at a fraction of the cost.

        These series move with every execution, so unlike the snapshot they cannot be
        encoded once per refresh; with 10,000 pipelines that ran, prometheus_client's
        encoder took ~230 ms per scrape. Each series' name and labels are formatted once
        and kept, so a scrape formats only the values.
        """
        with self._lock:
            copies = [(sums, list(sums.values.items())) for sums in self._families()]
        out: list[str] = []
        for sums, items in copies:
            out.append(counter_header(sums.name, sums.documentation, openmetrics))
            out += [f"{sums.prefix(key)}{go_float(value)}\n" for key, value in items]
        return "".join(out).encode()

    def _families(self) -> tuple[_Sums, ...]:
        return self.started, self.finished, self.rows


class Metrics:
    """The event-fed families; one instance per registry."""

    def __init__(
        self, registry: CollectorRegistry, *, include_pipeline_counters: bool = True
    ) -> None:
        self.pipelines = PipelineCounters()
        if include_pipeline_counters:
            registry.register(self.pipelines)
        self.execution_duration = Histogram(
            "watcher_execution_duration_seconds",
            "Duration of ended executions, by pipeline type.",
            ["pipeline_type"],
            buckets=EXECUTION_BUCKETS,
            registry=registry,
        )
        self.http_duration = Histogram(
            "watcher_http_request_duration_seconds",
            "HTTP request duration, by method, route template and status code.",
            ["method", "route", "status"],
            buckets=HTTP_BUCKETS,
            registry=registry,
        )
        self.job_runs = Counter(
            "watcher_scheduler_job_runs_total",
            "Scheduled job runs on this replica.",
            ["job"],
            registry=registry,
        )
        self.job_failures = Counter(
            "watcher_scheduler_job_failures_total",
            "Scheduled job runs that raised.",
            ["job"],
            registry=registry,
        )
        self.job_duration = Histogram(
            "watcher_scheduler_job_duration_seconds",
            "Duration of scheduled job runs.",
            ["job"],
            buckets=JOB_BUCKETS,
            registry=registry,
        )
        self.job_last_success: dict[str, float] = {}  # rendered by SchedulerCollector

    def execution_started(self, event: ExecutionStarted) -> None:
        self.pipelines.inc(self.pipelines.started, (event.pipeline, event.pipeline_type))

    def execution_ended(self, event: ExecutionEnded) -> None:
        status = "success" if event.success else "failure"
        labels = (event.pipeline, event.pipeline_type)
        self.pipelines.inc(self.pipelines.finished, (*labels, status))
        self.execution_duration.labels(event.pipeline_type).observe(event.duration_seconds)
        counts = [(op, getattr(event, attribute)) for op, attribute in _ROWS]
        for operation, count in [*counts, ("total", event.total_rows)]:
            if count and count > 0:
                self.pipelines.inc(self.pipelines.rows, (*labels, operation), count)

    def retain_pipelines(self, active: Collection[str]) -> None:
        """Forget the execution counters of pipelines no longer active (see `retain`)."""
        self.pipelines.retain(active)

    def request_finished(self, event: RequestFinished) -> None:
        labels = (event.method, event.route, str(event.status))
        self.http_duration.labels(*labels).observe(event.duration_seconds)

    def job_finished(self, event: JobFinished) -> None:
        self.job_runs.labels(event.job).inc()
        self.job_duration.labels(event.job).observe(event.duration_seconds)
        failures = self.job_failures.labels(event.job)  # exported at 0 from the first run
        if event.success:
            self.job_last_success[event.job] = event.finished_at.timestamp()
        else:
            failures.inc()

    def subscribe(self, services: Services) -> None:
        events = services.events
        events.subscribe(ExecutionStarted, self.execution_started)
        events.subscribe(ExecutionEnded, self.execution_ended)
        events.subscribe(RequestFinished, self.request_finished)
        events.subscribe(JobFinished, self.job_finished)


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


# --- rendering -----------------------------------------------------------------------------


class PipelineCollector(Collector):
    """The per-pipeline families of the current snapshot, as of the snapshot's time.

    Lags and ages are computed at the snapshot's `taken_at`, not at scrape time, so the
    output only changes when the snapshot does and can be cached; they are at most one
    refresh interval old (`watcher_metrics_snapshot_age_seconds` says by how much).
    """

    def __init__(self, store: SnapshotStore) -> None:
        self._store = store

    def collect(self) -> Iterator[Metric]:
        snapshot = self._store.current
        if snapshot is None:
            return
        pipelines = GaugeMetricFamily("watcher_pipelines", PIPELINES_DOC, labels=["status"])
        pipelines.add_metric(["active"], len(snapshot.pipelines))
        pipelines.add_metric(["inactive"], snapshot.inactive_pipelines)
        yield pipelines
        yield from _pipeline_families(snapshot.pipelines, snapshot.taken_at)


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


class SnapshotStore:
    """The current snapshot and its exposition, rendered once per snapshot and format.

    Replaced whole, so a scrape never sees half an update. The per-pipeline families are
    most of a scrape (~30 samples per pipeline), so their exposition is encoded straight
    from the snapshot (`encode_snapshot`) once per refresh and format, and cached: a scrape
    then costs a dictionary lookup plus the small live families. `registry` renders the
    same families as Metric objects, for tests and anything that wants samples.
    """

    def __init__(self) -> None:
        self.current: Snapshot | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(PipelineCollector(self))
        self._encoded: dict[bool, bytes] = {}
        # The format scrapers asked for last (Prometheus prefers OpenMetrics): the one a
        # refresh encodes ahead of the next scrape.
        self.openmetrics = False

    def replace(self, snapshot: Snapshot) -> None:
        self.current = snapshot
        self._encoded = {}

    def encoded(self, openmetrics: bool) -> bytes:
        """The per-pipeline families (OpenMetrics or text format), encoded once per snapshot."""
        cache, snapshot = self._encoded, self.current  # a refresh swaps both in: read once
        self.openmetrics = openmetrics
        if snapshot is None:
            return b"# EOF\n" if openmetrics else b""
        if openmetrics not in cache:
            cache[openmetrics] = encode_snapshot(snapshot, openmetrics)
        return cache[openmetrics]


@dataclass(frozen=True)
class Telemetry:
    """What `GET /metrics` encodes: the live families (`metrics`), the registry that
    prometheus_client encodes (`exposed`: the live families without the per-pipeline
    execution counters, which `metrics.pipelines` encodes itself) and the snapshot store."""

    metrics: Metrics
    exposed: CollectorRegistry
    store: SnapshotStore
