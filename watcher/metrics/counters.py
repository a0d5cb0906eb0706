"""Prometheus metrics fed by events: execution counters by pipeline, request and job histograms.

The counters and histograms here are incremented by event handlers, i.e. after the
transaction that caused them committed (`watcher.events`); `GET /metrics` and the collectors
that read state at scrape time are in `watcher.metrics.routes` and `watcher.metrics.collectors`.

Labels are bounded: pipelines, pipeline types, operations, statuses, route templates and job
names; never an execution id or free text. Per-pipeline series are the snapshot's and the
execution counters' (`PipelineCounters`), which drop a pipeline once it leaves the snapshot
(deactivated or deleted). The duration histogram stays by pipeline type: a dozen buckets per
pipeline would multiply the scrape; per pipeline, the snapshot has the last duration.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from watcher.events import (
    ExecutionEnded,
    ExecutionStarted,
    JobFinished,
    RequestFinished,
)
from watcher.metrics.exposition import (
    counter_header,
    escape_label_value,
    go_float,
)
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
