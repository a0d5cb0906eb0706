"""The learned expectations a pipeline's snapshot exports: pure values from `Expectations`.

Exported only where the learned expectation is the one in force (docs/checks.md, priority):
no start expectation under a configured cron or a timeliness mute, no duration band under a
timeliness rule or mute, no freshness under a freshness rule or mute, no band of a metric with
an active anomaly rule. So an alert on these gauges never doubles a configured one.

The bands are those of the latest ended run (its start decides the hour-of-day / day-of-week
bucket), so Grafana can draw the run's value between them ("expected vs actual"); the next
start is the first slot after the latest start, late once its deadline passes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import text

from watcher.db.driver import DriverSession, Statement
from watcher.expectations import Expectations

# Snapshot `operation` label → learned metric (the same labels as last_execution_rows).
ROW_METRICS: Mapping[str, str] = {
    "insert": "inserts",
    "update": "updates",
    "soft_delete": "soft_deletes",
    "total": "total_rows",
}


@dataclass(frozen=True, slots=True)
class LearnedState:
    """A pipeline's expectations and which of them a configured rule leaves in force."""

    expectations: Expectations
    start: bool = True
    duration: bool = True
    freshness: bool = True
    configured_metrics: frozenset[str] = frozenset()
    findings: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LearnedGauges:
    schedule: str | None = None
    next_start: float | None = None
    start_deadline: float | None = None
    duration: tuple[float, float] | None = None
    rows: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    freshness_seconds: float | None = None


def gauges(
    state: LearnedState, latest_start: datetime | None, last_run_start: datetime | None
) -> LearnedGauges:
    """The gauge values of one pipeline (see module doc)."""
    exp = state.expectations
    schedule = next_start = deadline = None
    c = exp.cadence
    if c is not None and state.start and latest_start is not None:
        t = latest_start.timestamp()
        next_start = c.next_expected_start(c.slot_near(t) + 0.5 * c.period_seconds)
        deadline = next_start + c.tolerance_seconds
        schedule = c.describe()
    duration = None
    rows: dict[str, tuple[float, float]] = {}
    if last_run_start is not None:
        at = last_run_start.timestamp()
        band = exp.band("duration_seconds", at)
        if (
            band is not None
            and state.duration
            and "duration_seconds" not in state.configured_metrics
        ):
            duration = (band.low, band.high)
        for operation, metric in ROW_METRICS.items():
            band = exp.band(metric, at)
            if band is not None and metric not in state.configured_metrics:
                rows[operation] = (band.low, band.high)
    fresh = exp.freshness.max_gap_seconds if exp.freshness and state.freshness else None
    return LearnedGauges(schedule, next_start, deadline, duration, rows, fresh)


# Per pipeline in force: its expectations and what its configured rules take over. The
# parsed `Expectations` are cached by (pipeline, trained_at), and the query sends the JSON
# only of those the cache does not hold: a refresh every few seconds reads and parses only
# what the learn job changed.
LEARNED = Statement(
    text("""
SELECT x.pipeline_id, x.trained_at,
       CASE WHEN k.trained_at IS NOT DISTINCT FROM x.trained_at THEN NULL
            ELSE x.expectations END AS expectations,
       COALESCE(p.schedule, t.schedule) IS NULL
           AND NOT p.mute_timeliness_check AND NOT t.mute_timeliness_check AS start,
       NOT p.mute_timeliness_check AND NOT t.mute_timeliness_check
           AND (p.timeliness_number IS NULL OR p.timeliness_datepart IS NULL)
           AND (t.timeliness_number IS NULL OR t.timeliness_datepart IS NULL) AS duration,
       NOT p.mute_freshness_check AND NOT t.mute_freshness_check
           AND (p.freshness_number IS NULL OR p.freshness_datepart IS NULL)
           AND (t.freshness_number IS NULL OR t.freshness_datepart IS NULL) AS freshness,
       ARRAY(SELECT r.metric_field FROM anomaly_detection_rule r
             WHERE r.pipeline_id = p.id AND r.active) AS configured
FROM pipeline_expectation x
JOIN pipeline p ON p.id = x.pipeline_id
JOIN pipeline_type t ON t.id = p.pipeline_type_id
LEFT JOIN pipeline_type_expectation tx ON tx.pipeline_type_id = p.pipeline_type_id
LEFT JOIN unnest(CAST(:known_ids AS bigint[]), CAST(:known_at AS timestamptz[]))
    AS k(pipeline_id, trained_at) ON k.pipeline_id = x.pipeline_id
WHERE x.expectations IS NOT NULL AND p.active AND NOT x.opted_out
  AND tx.opted_out IS NOT TRUE
""")
)
# Learned findings per pipeline and kind (the unique index leads with pipeline_id, kind),
# plus those log cleanup pruned (so the counter never goes down).
LEARNED_COUNTS = Statement(
    text("""
SELECT pipeline_id, kind, sum(n)::bigint FROM (
    SELECT pipeline_id, kind, count(*) AS n FROM learned_finding_log GROUP BY pipeline_id, kind
    UNION ALL
    SELECT pipeline_id, label, rows FROM pruned_log_count WHERE kind = 'learned'
) c GROUP BY pipeline_id, kind
""")
)

_parsed: dict[int, tuple[datetime, Expectations]] = {}


def _expectations(pipeline_id: int, trained_at: datetime, data: Any) -> Expectations:
    cached = _parsed.get(pipeline_id)
    if data is None and cached is not None:
        return cached[1]
    exp = Expectations.from_json(data)
    _parsed[pipeline_id] = (trained_at, exp)
    return exp


async def load_learned(db: DriverSession) -> dict[int, LearnedState]:
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    for pid, kind, n in await db.fetch(LEARNED_COUNTS):
        counts[pid][kind] = n
    out: dict[int, LearnedState] = {}
    known = list(_parsed.items())
    params = {"known_ids": [k for k, _ in known], "known_at": [at for _, (at, _) in known]}
    for row in await db.fetch(LEARNED, params):
        pid = row["pipeline_id"]
        out[pid] = LearnedState(
            expectations=_expectations(pid, row["trained_at"], row["expectations"]),
            start=row["start"],
            duration=row["duration"],
            freshness=row["freshness"],
            configured_metrics=frozenset(row["configured"]),
            findings=counts.get(pid, {}),
        )
    for pid in set(_parsed) - set(out):
        del _parsed[pid]
    return out
