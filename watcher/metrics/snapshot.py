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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import func, select, text, true

from watcher.checks.rules import Rule, resolve, split_row
from watcher.db import schema
from watcher.db.driver import DriverSession, Statement
from watcher.metrics.learned import LearnedState, load_learned

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
    learned: LearnedState | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    taken_at: datetime
    duration_seconds: float
    pipelines: tuple[PipelineState, ...]
    inactive_pipelines: int = 0


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
    learned = await load_learned(db)
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
    if learned:
        states = tuple(
            replace(state, learned=learned[row["id"]]) if row["id"] in learned else state
            for state, row in zip(states, pipelines, strict=True)
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
