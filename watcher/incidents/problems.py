"""The problems active at `now`, gathered from what the checks find and what runs report.

Not from the last-state gauges: those read "the latest execution by start", so two real cases
stayed silent (issue 15, item 0):

- a run that failed after a newer, overlapping run had already succeeded (backfills,
  retries): the latest run *by end* is the failed one, and it is a problem until another run
  of the pipeline ends successfully;
- an older run that completed past its deadline after a newer short one: the timeliness check
  logged it, and it is a problem until another run of the pipeline ends.

Each problem carries its evidence time (`started_at`), the same on every run while it lasts,
because attachment compares it with the upstream incident's start:

- failed → the start of the failed run (what runs downstream meanwhile is its echo);
- overdue → start + the allowed duration (when it became overdue);
- stale → last target change + the freshness rule (when it *became* stale);
- missed → the scheduled time that was missed;
- anomalous → when the anomalous value was evaluated.

Stale and overdue-running are decided here with the checks' own `judge` at `now`, so an
incident does not wait for the next freshness run (every 5 minutes by default) while the
per-pipeline alert, which its incident must inhibit, already fires. The queries read the
active pipelines' current rows and per-pipeline index probes: their cost does not grow with
the stored history (the overlapping-run search is bounded by `lookback`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from watcher.checks import freshness, timeliness
from watcher.checks.missed_runs import EARLY_START_TOLERANCE
from watcher.incidents.model import Problem, ProblemKind

# Per active pipeline: its latest ended run by start (what the gauges show) and its latest
# ended run by end within the lookback (an older overlapping run that ended last), each with
# the timeliness finding logged for it, if any.
OUTCOMES = text("""
SELECT p.id AS pipeline_id,
       s.id AS s_id, s.start_date AS s_start, s.completed_successfully AS s_ok,
       sl.seconds_threshold AS s_late,
       e.id AS e_id, e.start_date AS e_start, e.completed_successfully AS e_ok,
       el.seconds_threshold AS e_late
FROM pipeline p
LEFT JOIN LATERAL (
    SELECT x.id, x.start_date, x.completed_successfully FROM pipeline_execution x
    WHERE x.pipeline_id = p.id AND x.end_date IS NOT NULL
    ORDER BY x.start_date DESC, x.id DESC LIMIT 1
) s ON true
LEFT JOIN LATERAL (
    SELECT x.id, x.start_date, x.completed_successfully FROM pipeline_execution x
    WHERE x.pipeline_id = p.id AND x.end_date IS NOT NULL AND x.start_date >= :since
    ORDER BY x.end_date DESC, x.id DESC LIMIT 1
) e ON true
LEFT JOIN timeliness_pipeline_execution_log sl ON sl.pipeline_execution_id = s.id
LEFT JOIN timeliness_pipeline_execution_log el ON el.pipeline_execution_id = e.id
WHERE p.active AND s.id IS NOT NULL
""")

# Running executions (the partial index ix_pipeline_execution_running) with their rules.
RUNNING = timeliness.CANDIDATES

MISSED = text(f"""
SELECT p.id AS pipeline_id, m.expected_at
FROM pipeline p
JOIN LATERAL (
    SELECT expected_at FROM missed_run_log m WHERE m.pipeline_id = p.id
    ORDER BY expected_at DESC LIMIT 1
) m ON true
WHERE p.active AND NOT EXISTS (
    SELECT 1 FROM pipeline_execution x
    WHERE x.pipeline_id = p.id
      AND x.start_date >= m.expected_at - interval '{EARLY_START_TOLERANCE.total_seconds():.0f} seconds'
)
""")

ANOMALOUS = text("""
SELECT r.pipeline_id, r.metric_field, latest.detected_at, latest.z_score
FROM anomaly_detection_rule r
JOIN pipeline p ON p.id = r.pipeline_id
JOIN LATERAL (
    SELECT x.is_anomaly, x.detected_at, x.z_score FROM anomaly_detection_result x
    WHERE x.rule_id = r.id ORDER BY x.detected_at DESC, x.id DESC LIMIT 1
) latest ON true
WHERE r.active AND p.active AND latest.is_anomaly
""")


def outcome_problems(row: dict[str, Any]) -> list[Problem]:
    """Failed and overdue-completed problems of one OUTCOMES row (pure)."""
    found: list[Problem] = []
    pid = int(row["pipeline_id"])
    for prefix in ("s", "e"):
        if row[f"{prefix}_id"] is None:
            continue
        execution, start = row[f"{prefix}_id"], row[f"{prefix}_start"]
        if row[f"{prefix}_ok"] is False:
            found.append(Problem(pid, ProblemKind.FAILED, start, f"execution {execution} failed"))
        elif row[f"{prefix}_late"] is not None:
            due = start + timedelta(seconds=float(row[f"{prefix}_late"]))
            detail = f"execution {execution} finished past its deadline"
            found.append(Problem(pid, ProblemKind.OVERDUE, due, detail))
    return found


async def gather(conn: AsyncConnection, now: datetime, lookback: timedelta) -> list[Problem]:
    """Every problem active at `now` (several per pipeline and kind: `step` keeps the earliest)."""
    problems: list[Problem] = []
    for row in await conn.execute(OUTCOMES, {"since": now - lookback}):
        problems += outcome_problems(dict(row._mapping))
    for row in await conn.execute(RUNNING, {"since": now, "now": now}):
        overdue = timeliness.judge(dict(row._mapping), now)
        if overdue is not None and overdue.execution_status == "running":
            due = overdue.start_date + timedelta(seconds=overdue.seconds_threshold)
            detail = f"execution {overdue.pipeline_execution_id} running past its deadline"
            problems.append(Problem(overdue.pipeline_id, ProblemKind.OVERDUE, due, detail))
    for row in await conn.execute(freshness.CANDIDATES):
        stale = freshness.judge(dict(row._mapping), now)
        if stale is not None:
            detail = f"no target change since {stale.last_dml_timestamp.isoformat()}"
            problems.append(Problem(stale.pipeline_id, ProblemKind.STALE, stale.deadline, detail))
    for row in await conn.execute(MISSED):
        detail = f"scheduled run at {row.expected_at.isoformat()} did not start"
        problems.append(Problem(row.pipeline_id, ProblemKind.MISSED, row.expected_at, detail))
    for row in await conn.execute(ANOMALOUS):
        detail = f"anomalous {row.metric_field} (z = {row.z_score:.2f})"
        problems.append(Problem(row.pipeline_id, ProblemKind.ANOMALOUS, row.detected_at, detail))
    return problems
