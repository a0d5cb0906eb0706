"""Per-pipeline state for `/metrics`: loaded from PostgreSQL by a job, rendered from memory.

Scrapes never touch the database. A scheduled job (`refresh`) runs a handful of indexed
queries every `metrics_snapshot_interval_seconds`, turns the rows into a frozen `Snapshot`
and swaps it into a `SnapshotStore`; `SnapshotCollector.collect()` renders whatever snapshot
is current. Quantities that depend on "now" (freshness lag, age of the oldest running
execution, snapshot age) are computed at collect time from the snapshot and the clock, so
they keep moving between refreshes.

Only active pipelines are in a snapshot: a pipeline that is deactivated or deleted loses
all its series at the next refresh (inactive ones are only counted in `watcher_pipelines`).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString
from sqlalchemy import func, select, text, true

from watcher.checks.rules import Rule, resolve, split_row
from watcher.db import schema
from watcher.db.driver import DriverSession, Statement

DML_OPERATIONS = ("insert", "update", "soft_delete", "total")
TIMELINESS_STATUSES = ("running", "completed")
_PIPELINE_LABELS = ["pipeline", "pipeline_type"]
PIPELINES_DOC = "Pipelines known to Watcher, by status."


def rule_source(rule: Rule) -> str:
    """The `rule_source` label: "child" (the pipeline's own rule) or "parent" (its type's)."""
    return "child" if rule.used_child_config else "parent"


def parse_watermark(value: str | None) -> tuple[float | None, float | None]:
    """(number, unix timestamp) for a watermark that parses as one of them, else None."""
    if value is None or not value.strip():
        return None, None
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        return (number, None) if math.isfinite(number) else (None, None)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            return None, None
        moment = datetime(day.year, day.month, day.day)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return None, moment.timestamp()


@dataclass(frozen=True, slots=True)
class LastExecution:
    success: bool
    start_date: datetime
    end_date: datetime
    duration_seconds: float | None
    rows: Mapping[str, int | None]  # by DML operation
    throughput: float | None


@dataclass(frozen=True, slots=True)
class AnomalyState:
    metric: str
    z_threshold: float
    z_score: float | None  # latest result for the rule, None before the first evaluation
    detected_total: int


@dataclass(frozen=True, slots=True)
class PipelineState:
    name: str
    pipeline_type: str
    last_execution: LastExecution | None = None
    last_dml: datetime | None = None
    freshness: Rule | None = None
    timeliness: Rule | None = None
    timeliness_threshold_seconds: float | None = None
    running: int = 0
    oldest_running_start: datetime | None = None
    watermark: str | None = None
    anomalies: tuple[AnomalyState, ...] = ()
    timeliness_violations: Mapping[str, int] = field(default_factory=dict)
    freshness_violations: int = 0
    missed_runs: int = 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    taken_at: datetime
    duration_seconds: float
    pipelines: tuple[PipelineState, ...]
    inactive_pipelines: int = 0


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


# --- loading -------------------------------------------------------------------------------


def _rule(row: Mapping[str, Any], check: str) -> Rule | None:
    child, parent = split_row(row)
    return resolve(check, child, parent)


def _last_execution(row: Any) -> LastExecution | None:
    if row is None:
        return None
    counts = ("inserts", "updates", "soft_deletes", "total_rows")
    return LastExecution(
        success=row["completed_successfully"],
        start_date=row["start_date"],
        end_date=row["end_date"],
        duration_seconds=row["duration_seconds"],
        rows={op: row[c] for op, c in zip(DML_OPERATIONS, counts, strict=True)},
        throughput=row["throughput"],
    )


def _pipeline_rows_query() -> Statement:
    p, t = schema.pipeline, schema.pipeline_type
    columns = [p.c.id, p.c.name, t.c.name.label("pipeline_type"), p.c.watermark]
    columns += [p.c.last_target_insert, p.c.last_target_update, p.c.last_target_soft_delete]
    for check in ("freshness", "timeliness"):
        columns += [p.c[f"{check}_number"], p.c[f"{check}_datepart"], p.c[f"mute_{check}_check"]]
        columns += [
            t.c[f"{check}_number"].label(f"type_{check}_number"),
            t.c[f"{check}_datepart"].label(f"type_{check}_datepart"),
            t.c[f"mute_{check}_check"].label(f"type_mute_{check}_check"),
        ]
    return Statement(select(*columns).select_from(p.join(t)).where(p.c.active).order_by(p.c.id))


def _last_executions_query() -> Statement:
    # Latest ended execution by start: walks ix_pipeline_execution_pipeline_id_start_date
    # backwards per active pipeline instead of sorting the whole history.
    p, e = schema.pipeline, schema.pipeline_execution
    columns = [e.c.pipeline_id, e.c.completed_successfully, e.c.start_date, e.c.end_date]
    columns += [e.c.duration_seconds, e.c.throughput]
    columns += [e.c.inserts, e.c.updates, e.c.soft_deletes, e.c.total_rows]
    latest = (
        select(*columns)  # what LastExecution keeps, not the metadata documents
        .where(e.c.pipeline_id == p.c.id, e.c.end_date.is_not(None))
        .order_by(e.c.start_date.desc(), e.c.id.desc())
        .limit(1)
        .lateral()
    )
    return Statement(select(latest).select_from(p.join(latest, true())).where(p.c.active))


def _counts_query(table: Any, *extra: Any) -> Statement:
    return Statement(
        select(table.c.pipeline_id, *extra, func.count()).group_by(table.c.pipeline_id, *extra)
    )


_e, _p, _pruned_t = schema.pipeline_execution, schema.pipeline, schema.pruned_log_count
_timeliness_log = schema.timeliness_pipeline_execution_log
PIPELINE_ROWS = _pipeline_rows_query()
LAST_EXECUTIONS = _last_executions_query()
RUNNING_COUNTS = Statement(  # the partial index ix_pipeline_execution_running
    select(_e.c.pipeline_id, func.count(), func.min(_e.c.start_date))
    .where(_e.c.end_date.is_(None))
    .group_by(_e.c.pipeline_id)
)
TIMELINESS_COUNTS = _counts_query(_timeliness_log, _timeliness_log.c.execution_status)
FRESHNESS_COUNTS = _counts_query(schema.freshness_pipeline_log)
MISSED_COUNTS = _counts_query(schema.missed_run_log)
# Log rows removed by cleanup, added back so the exported counters never go down.
PRUNED = Statement(
    select(_pruned_t.c.pipeline_id, _pruned_t.c.kind, _pruned_t.c.label, _pruned_t.c.rows)
)
INACTIVE = Statement(select(func.count()).where(~_p.c.active))

# Per active rule: its latest result's z-score (one probe of ix_anomaly_detection_result_
# rule_latest) and its number of anomalies (the partial ix_anomaly_detection_result_anomalies:
# only anomalous results are read, however many results there are).
ANOMALY_STATE = Statement(
    text("""
SELECT r.pipeline_id, r.metric_field, r.z_threshold, latest.z_score,
       COALESCE(found.n, 0) + COALESCE(pruned.rows, 0) AS detected
FROM anomaly_detection_rule r
LEFT JOIN LATERAL (
    SELECT x.z_score FROM anomaly_detection_result x
    WHERE x.rule_id = r.id ORDER BY x.detected_at DESC, x.id DESC LIMIT 1
) latest ON true
LEFT JOIN (
    SELECT rule_id, count(*) AS n FROM anomaly_detection_result
    WHERE is_anomaly GROUP BY rule_id
) found ON found.rule_id = r.id
LEFT JOIN pruned_log_count pruned
    ON pruned.pipeline_id = r.pipeline_id AND pruned.kind = 'anomaly'
   AND pruned.label = r.metric_field
WHERE r.active
ORDER BY r.pipeline_id, r.metric_field
""")
)


async def load_snapshot(db: DriverSession, now: datetime) -> Snapshot:
    """Read every active pipeline's state; `db` is in one REPEATABLE READ transaction, so
    every query sees the same moment. The reads go to the driver directly: SQLAlchemy's
    async cursor wraps rows one at a time, and at 10,000 pipelines (60,000 anomaly rules)
    that was most of a refresh."""
    started = time.perf_counter()
    # Plain dicts: each row is split and read a dozen times.
    pipelines = [dict(row) for row in await db.fetch(PIPELINE_ROWS)]
    last = {row["pipeline_id"]: row for row in await db.fetch(LAST_EXECUTIONS)}
    running = {pid: (n, oldest) for pid, n, oldest in await db.fetch(RUNNING_COUNTS)}
    timeliness = {(pid, status): n for pid, status, n in await db.fetch(TIMELINESS_COUNTS)}
    freshness = {pid: n for pid, n in await db.fetch(FRESHNESS_COUNTS)}
    missed = {pid: n for pid, n in await db.fetch(MISSED_COUNTS)}
    anomalies: dict[int, list[Any]] = defaultdict(list)
    for row in await db.fetch(ANOMALY_STATE):
        anomalies[row["pipeline_id"]].append(row)
    pruned = {(pid, kind, label): n for pid, kind, label, n in await db.fetch(PRUNED)}
    inactive = (await db.fetch(INACTIVE))[0][0]
    states = tuple(
        build_state(
            row,
            last=last.get(row["id"]),
            running=running.get(row["id"], (0, None)),
            timeliness_violations={
                s: timeliness.get((row["id"], s), 0) + pruned.get((row["id"], "timeliness", s), 0)
                for s in TIMELINESS_STATUSES
            },
            freshness_violations=freshness.get(row["id"], 0)
            + pruned.get((row["id"], "freshness", ""), 0),
            missed_runs=missed.get(row["id"], 0) + pruned.get((row["id"], "missed_run", ""), 0),
            anomalies=anomalies.get(row["id"], ()),
            now=now,
        )
        for row in pipelines
    )
    return Snapshot(now, time.perf_counter() - started, states, inactive)


def build_state(
    row: Mapping[str, Any],
    *,
    last: Mapping[str, Any] | None,
    running: tuple[int, datetime | None],
    timeliness_violations: Mapping[str, int],
    freshness_violations: int,
    missed_runs: int,
    anomalies: Iterable[Mapping[str, Any]],
    now: datetime,
) -> PipelineState:
    """One pipeline's state from its rows; pure, so the rule choices are testable alone."""
    last_execution = _last_execution(last)
    dml = [row[c] for c in ("last_target_insert", "last_target_update", "last_target_soft_delete")]
    dml_times = [moment for moment in dml if moment is not None]
    timeliness = _rule(row, "timeliness")
    # The timeliness window starts when the execution it judges started: the oldest running
    # one, else the last ended one (only month/year windows depend on where they start).
    reference = running[1] or (last_execution.start_date if last_execution else now)
    return PipelineState(
        name=row["name"],
        pipeline_type=row["pipeline_type"],
        last_execution=last_execution,
        last_dml=max(dml_times) if dml_times else None,
        freshness=_rule(row, "freshness"),
        timeliness=timeliness,
        timeliness_threshold_seconds=timeliness.seconds_from(reference) if timeliness else None,
        running=running[0],
        oldest_running_start=running[1],
        watermark=row["watermark"],
        anomalies=tuple(
            AnomalyState(a["metric_field"], a["z_threshold"], a["z_score"], a["detected"])
            for a in anomalies
        ),
        timeliness_violations=dict(timeliness_violations),
        freshness_violations=freshness_violations,
        missed_runs=missed_runs,
    )


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

    def metric_family(self) -> Metric:
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


def _pipeline_families(states: Iterable[PipelineState], now: datetime) -> Iterator[Metric]:
    families = {id(f): f.metric_family() for f in FAMILIES}
    for state in states:
        labels = [state.name, state.pipeline_type]
        for family, extra, value in pipeline_samples(state, now):
            families[id(family)].add_metric([*labels, *extra], value)
    yield from families.values()


# --- direct encoding -----------------------------------------------------------------------
# The per-pipeline families are most of a scrape: at 10,000 pipelines ~300,000 samples. Going
# through Metric objects and prometheus_client's encoders costs ~4 s and ~300 MB for that;
# writing the lines straight from the snapshot gives byte-for-byte the same exposition
# (tests compare the two) in a fraction of the time and memory.


def escape_label_value(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def _label_string(family: Family, base: str, extra: tuple[str, ...]) -> str:
    # prometheus_client sorts label names: "metric" and "operation" sort before "pipeline",
    # "rule_source" and "status" after "pipeline_type".
    before = after = ""
    for name, value in zip(family.extra, extra, strict=True):
        part = f'{name}="{escape_label_value(value)}"'
        if name < "pipeline":
            before += part + ","
        else:
            after += "," + part
    return f"{{{before}{base}{after}}}"


def counter_header(name: str, doc: str, openmetrics: bool) -> str:
    """HELP and TYPE of a counter named `name` (ending in `_total`), as prometheus_client."""
    return _header(name.removesuffix("_total"), doc, "counter", openmetrics)


def _header(name: str, doc: str, kind: str, openmetrics: bool) -> str:
    doc = doc.replace("\\", r"\\").replace("\n", r"\n")
    if openmetrics:  # OpenMetrics escapes quotes in HELP too
        doc = doc.replace('"', r"\"")
        return f"# HELP {name} {doc}\n# TYPE {name} {kind}\n"
    if kind == "counter":
        name = f"{name}_total"
    return f"# HELP {name} {doc}\n# TYPE {name} {kind}\n"


def encode_snapshot(snapshot: Snapshot, openmetrics: bool) -> bytes:
    """`watcher_pipelines` and the per-pipeline families of `snapshot`, as exposition text.

    Identical to `generate_latest` over `SnapshotStore.registry` (text format, or
    OpenMetrics ending in `# EOF`), without building a sample object per series.
    """
    lines: dict[int, list[str]] = {id(f): [] for f in FAMILIES}
    for state in snapshot.pipelines:
        base = f'pipeline="{escape_label_value(state.name)}",'
        base += f'pipeline_type="{escape_label_value(state.pipeline_type)}"'
        for family, extra, value in pipeline_samples(state, snapshot.taken_at):
            labels = _label_string(family, base, extra) if extra else f"{{{base}}}"
            lines[id(family)].append(f"{family.sample_name}{labels} {floatToGoString(value)}\n")
    head = [
        _header("watcher_pipelines", PIPELINES_DOC, "gauge", openmetrics),
        f'watcher_pipelines{{status="active"}} {floatToGoString(len(snapshot.pipelines))}\n',
        f'watcher_pipelines{{status="inactive"}} {floatToGoString(snapshot.inactive_pipelines)}\n',
    ]
    chunks = ["".join(head).encode()]
    for family in FAMILIES:  # one family's lines at a time: they are freed as they are joined
        family_lines = lines.pop(id(family))
        family_lines.insert(0, _header(family.name, family.doc, family.kind, openmetrics))
        chunks.append("".join(family_lines).encode())
        del family_lines
    if openmetrics:
        chunks.append(b"# EOF\n")
    return b"".join(chunks)
