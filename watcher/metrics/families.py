"""The per-pipeline families the snapshot exports: name, help, labels, and the samples of
one pipeline's state (`pipeline_samples`), shared by the collector and the direct encoder."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from watcher.db.schema import LEARNED_KINDS
from watcher.metrics.learned import gauges
from watcher.metrics.snapshot import (
    _PIPELINE_LABELS,
    TIMELINESS_STATUSES,
    PipelineState,
    parse_watermark,
    rule_source,
)


class Family:
    """One per-pipeline family: its name, help, type and the labels beyond pipeline/type."""

    __slots__ = ("doc", "extra", "kind", "name", "sample_name")

    def __init__(self, name: str, doc: str, kind: str = "gauge", *extra: str) -> None:
        self.name, self.doc, self.kind, self.extra = name, doc, kind, extra
        # A counter's family name drops `_total`; its samples keep it (prometheus_client's
        # CounterMetricFamily and both exposition formats agree on this).
        self.sample_name = name
        if kind == "counter":
            self.name = name.removesuffix("_total")
            self.sample_name = f"{self.name}_total"

    def metric_family(self) -> GaugeMetricFamily | CounterMetricFamily:
        kind = GaugeMetricFamily if self.kind == "gauge" else CounterMetricFamily
        return kind(self.name, self.doc, labels=[*_PIPELINE_LABELS, *self.extra])


ACTIVE = Family("watcher_pipeline_active", "1 for every active pipeline.")
SUCCESS = Family(
    "watcher_pipeline_last_execution_success",
    "1 if the pipeline's latest ended execution succeeded, 0 if it failed.",
)
DURATION = Family(
    "watcher_pipeline_last_execution_duration_seconds",
    "Duration of the pipeline's latest ended execution.",
)
END = Family(
    "watcher_pipeline_last_execution_end_timestamp_seconds",
    "End time of the pipeline's latest ended execution.",
)
ROWS = Family(
    "watcher_pipeline_last_execution_rows",
    "Rows reported by the latest ended execution, by DML operation.",
    "gauge",
    "operation",
)
THROUGHPUT = Family(
    "watcher_pipeline_last_execution_throughput_rows_per_second",
    "Throughput (total rows / duration) of the latest ended execution.",
)
LAST_DML = Family(
    "watcher_pipeline_last_dml_timestamp_seconds",
    "Latest insert, update or soft delete the pipeline reported on its target.",
)
LAG = Family(
    "watcher_pipeline_freshness_lag_seconds",
    "Seconds since the pipeline's last DML (compare with the freshness threshold).",
)
FRESHNESS = Family(
    "watcher_pipeline_freshness_threshold_seconds",
    "Freshness rule in seconds (pipeline rule = child, type rule = parent); absent "
    "when muted or no rule.",
    "gauge",
    "rule_source",
)
RUNNING = Family("watcher_pipeline_running_executions", "Executions started and not ended.")
OLDEST = Family(
    "watcher_pipeline_oldest_running_execution_age_seconds",
    "Age of the pipeline's oldest running execution.",
)
TIMELINESS = Family(
    "watcher_pipeline_timeliness_threshold_seconds",
    "Timeliness rule in seconds (child or parent); absent when muted or no rule.",
    "gauge",
    "rule_source",
)
WATERMARK = Family("watcher_pipeline_watermark", "The stored watermark, when it is a number.")
WATERMARK_TS = Family(
    "watcher_pipeline_watermark_timestamp_seconds",
    "The stored watermark, when it is a date or timestamp.",
)
Z_SCORE = Family(
    "watcher_pipeline_anomaly_z_score",
    "z-score of the latest anomaly evaluation, per pipeline and metric.",
    "gauge",
    "metric",
)
Z_THRESHOLD = Family(
    "watcher_pipeline_anomaly_z_threshold",
    "z-score threshold of the active anomaly rule, per pipeline and metric.",
    "gauge",
    "metric",
)
ANOMALIES = Family(
    "watcher_pipeline_anomalies_detected_total",
    "Anomalies detected (results outside the bounds, including those log cleanup removed).",
    "counter",
    "metric",
)
TIMELINESS_VIOLATIONS = Family(
    "watcher_pipeline_timeliness_violations_total",
    "Overdue executions logged by the timeliness check, by status (cleanup never lowers it).",
    "counter",
    "status",
)
FRESHNESS_VIOLATIONS = Family(
    "watcher_pipeline_freshness_violations_total",
    "Stale last-DML times logged by the freshness check (cleanup never lowers it).",
    "counter",
)
MISSED_RUNS = Family(
    "watcher_pipeline_missed_runs_total",
    "Scheduled runs that never started (cleanup never lowers it).",
    "counter",
)
EXPECTED_START = Family(
    "watcher_pipeline_expected_start_timestamp_seconds",
    "Learned: when the run after the latest start is due (absent under a configured cron).",
    "gauge",
    "rule_source",
)
EXPECTED_START_DEADLINE = Family(
    "watcher_pipeline_expected_start_deadline_timestamp_seconds",
    "Learned: the due start plus its learned tolerance; later than this the run is late.",
    "gauge",
    "rule_source",
)
EXPECTED_SCHEDULE = Family(
    "watcher_pipeline_expected_schedule_info",
    "Learned schedule in words (the `schedule` label), 1 while it is in force.",
    "gauge",
    "rule_source",
    "schedule",
)
EXPECTED_DURATION = Family(
    "watcher_pipeline_expected_duration_seconds",
    "Learned duration band of the latest ended run (bound = lower or upper).",
    "gauge",
    "rule_source",
    "bound",
)
EXPECTED_ROWS = Family(
    "watcher_pipeline_expected_rows",
    "Learned band of the latest ended run's rows, by DML operation (bound = lower or upper).",
    "gauge",
    "rule_source",
    "operation",
    "bound",
)
EXPECTED_FRESHNESS = Family(
    "watcher_pipeline_expected_freshness_seconds",
    "Learned: the longest usual gap between changes of the pipeline's targets.",
    "gauge",
    "rule_source",
)
LEARNED_FINDINGS = Family(
    "watcher_pipeline_learned_findings_total",
    "Findings of the learned check, by kind (late_start, overdue, stale, anomaly).",
    "counter",
    "kind",
)

# Exposition order (the order of `_samples` within a pipeline does not matter).
FAMILIES: tuple[Family, ...] = (
    ACTIVE,
    SUCCESS,
    DURATION,
    END,
    ROWS,
    THROUGHPUT,
    LAST_DML,
    LAG,
    FRESHNESS,
    RUNNING,
    OLDEST,
    TIMELINESS,
    WATERMARK,
    WATERMARK_TS,
    Z_SCORE,
    Z_THRESHOLD,
    ANOMALIES,
    TIMELINESS_VIOLATIONS,
    FRESHNESS_VIOLATIONS,
    MISSED_RUNS,
    EXPECTED_START,
    EXPECTED_START_DEADLINE,
    EXPECTED_SCHEDULE,
    EXPECTED_DURATION,
    EXPECTED_ROWS,
    EXPECTED_FRESHNESS,
    LEARNED_FINDINGS,
)

Sample = tuple[Family, tuple[str, ...], float]


def pipeline_samples(s: PipelineState, now: datetime) -> Iterator[Sample]:
    """Every per-pipeline sample of one pipeline as (family, extra label values, value)."""
    yield ACTIVE, (), 1
    last = s.last_execution
    if last is not None:
        yield SUCCESS, (), 1 if last.success else 0
        yield END, (), last.end_date.timestamp()
        if last.duration_seconds is not None:
            yield DURATION, (), last.duration_seconds
        for operation, value in last.rows.items():
            if value is not None:
                yield ROWS, (operation,), value
        if last.throughput is not None:
            yield THROUGHPUT, (), last.throughput
    if s.last_dml is not None:
        yield LAST_DML, (), s.last_dml.timestamp()
        yield LAG, (), (now - s.last_dml).total_seconds()
        if s.freshness is not None:
            yield FRESHNESS, (rule_source(s.freshness),), s.freshness.seconds_from(s.last_dml)
    yield RUNNING, (), s.running
    if s.oldest_running_start is not None:
        yield OLDEST, (), (now - s.oldest_running_start).total_seconds()
    if s.timeliness is not None and s.timeliness_threshold_seconds is not None:
        yield TIMELINESS, (rule_source(s.timeliness),), s.timeliness_threshold_seconds
    number, moment = parse_watermark(s.watermark)
    if number is not None:
        yield WATERMARK, (), number
    if moment is not None:
        yield WATERMARK_TS, (), moment
    for a in s.anomalies:
        yield Z_THRESHOLD, (a.metric,), a.z_threshold
        yield ANOMALIES, (a.metric,), a.detected_total
        if a.z_score is not None:
            yield Z_SCORE, (a.metric,), a.z_score
    for status in TIMELINESS_STATUSES:
        yield TIMELINESS_VIOLATIONS, (status,), s.timeliness_violations.get(status, 0)
    yield FRESHNESS_VIOLATIONS, (), s.freshness_violations
    yield MISSED_RUNS, (), s.missed_runs
    if s.learned is not None:
        yield from _learned_samples(s)


def _learned_samples(s: PipelineState) -> Iterator[Sample]:
    assert s.learned is not None
    last = s.last_execution
    last_start = None if last is None else last.start_date
    starts = [t for t in (last_start, s.oldest_running_start) if t is not None]
    g = gauges(s.learned, max(starts) if starts else None, last_start)
    src = ("learned",)
    if g.next_start is not None and g.start_deadline is not None and g.schedule is not None:
        yield EXPECTED_START, src, g.next_start
        yield EXPECTED_START_DEADLINE, src, g.start_deadline
        yield EXPECTED_SCHEDULE, (*src, g.schedule), 1
    if g.duration is not None:
        yield EXPECTED_DURATION, (*src, "lower"), g.duration[0]
        yield EXPECTED_DURATION, (*src, "upper"), g.duration[1]
    for operation, (low, high) in g.rows.items():
        yield EXPECTED_ROWS, (*src, operation, "lower"), low
        yield EXPECTED_ROWS, (*src, operation, "upper"), high
    if g.freshness_seconds is not None:
        yield EXPECTED_FRESHNESS, src, g.freshness_seconds
    for kind in LEARNED_KINDS:
        yield LEARNED_FINDINGS, (kind,), s.learned.findings.get(kind, 0)


def _pipeline_families(states: Iterable[PipelineState], now: datetime) -> Iterator[Metric]:
    families = {id(f): f.metric_family() for f in FAMILIES}
    for state in states:
        labels = [state.name, state.pipeline_type]
        for family, extra, value in pipeline_samples(state, now):
            families[id(family)].add_metric([*labels, *extra], value)
    yield from families.values()
