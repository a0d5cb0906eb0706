"""The learn job: relearn the pipelines with new runs, from a bounded window of each.

1. `STALE_PIPELINES` picks the pipelines to relearn: active, not opted out (pipeline or
   type), whose latest execution started after `learned_through` — one probe of
   ix_pipeline_execution_pipeline_id_start_date per pipeline — or whose expectations are
   older than `relearn_after` (a window that only ages still changes: runs leave it, a
   pipeline that stopped running loses its schedule). At most `batch` per run, the least
   recently trained first, so a fleet that all changed at once is caught up over a few runs.
2. `WINDOW` reads one pipeline's last `max_runs` runs within `window_days` (the same index,
   LIMIT): the cost per pipeline is bounded by the window, never by the stored history.
   Feedback joins on its primary key; what the checks flagged comes from the execution's
   `anomaly_flags` and the learned findings of the window.
3. `learn` (pure, watcher/expectations) and one upsert per pipeline keep the result with
   `learned_through` = the latest start seen. The user's settings in the same row are kept.
   Runs overlapping a declared maintenance window (`maintenance.windows_of`) are not learned
   from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import numpy as np
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from watcher.checks.learned.maintenance import windows_of
from watcher.expectations import FLAG_BITS, METRICS, Expectations, History, LearnSettings, learn
from watcher.expectations.training import Sensitivity

STALE_PIPELINES = text("""
SELECT p.id, last.start_date AS latest_start,
       COALESCE(x.sensitivity, tx.sensitivity, 'medium') AS sensitivity, x.retrain_from
FROM pipeline p
LEFT JOIN pipeline_expectation x ON x.pipeline_id = p.id
LEFT JOIN pipeline_type_expectation tx ON tx.pipeline_type_id = p.pipeline_type_id
CROSS JOIN LATERAL (
    SELECT e.start_date FROM pipeline_execution e
    WHERE e.pipeline_id = p.id ORDER BY e.start_date DESC LIMIT 1
) last
WHERE p.active
  AND x.opted_out IS NOT TRUE AND tx.opted_out IS NOT TRUE
  AND (x.learned_through IS NULL OR last.start_date > x.learned_through
       OR x.trained_at < :relearn_before)
ORDER BY x.trained_at NULLS FIRST, p.id
LIMIT :batch
""")

WINDOW = text("""
SELECT e.id, extract(epoch FROM e.start_date) AS start, extract(epoch FROM e.end_date) AS end,
       e.completed_successfully AS success, e.duration_seconds, e.total_rows, e.inserts,
       e.updates, e.soft_deletes, e.anomaly_flags, f.verdict
FROM pipeline_execution e
LEFT JOIN expectation_feedback f ON f.pipeline_execution_id = e.id
WHERE e.pipeline_id = :pipeline_id AND e.start_date > :since AND e.start_date <= :now
ORDER BY e.start_date DESC
LIMIT :max_runs
""")

# Learned findings of the window, for training flags (by the unique index's pipeline_id).
FLAGGED = text("""
SELECT kind, metric, extract(epoch FROM subject) AS subject, pipeline_execution_id
FROM learned_finding_log
WHERE pipeline_id = :pipeline_id AND subject > :since
""")

SAVE = text("""
INSERT INTO pipeline_expectation AS x (pipeline_id, expectations, trained_at,
    learned_through, updated_at)
VALUES (:pipeline_id, CAST(:expectations AS jsonb), :now, :learned_through, :now)
ON CONFLICT (pipeline_id) DO UPDATE SET expectations = excluded.expectations,
    trained_at = excluded.trained_at, learned_through = excluded.learned_through,
    updated_at = excluded.updated_at
""")


def _num(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _flags(rows: Sequence[Mapping[str, Any]], findings: Sequence[Mapping[str, Any]]) -> list[int]:
    """Per run (time order): what configured anomaly detection and the learned check flagged.

    A late start flags the first run at or after its due time; a stale episode the first run
    after the last change it was about; an anomaly or overdue finding its own run."""
    index = {int(r["id"]): i for i, r in enumerate(rows)}
    starts = np.array([float(r["start"]) for r in rows], dtype=np.float64)
    flags = [0] * len(rows)
    for i, row in enumerate(rows):
        for metric, flagged in (row["anomaly_flags"] or {}).items():
            if flagged is True and metric in FLAG_BITS:
                flags[i] |= FLAG_BITS[metric]
    for f in findings:
        kind, execution = f["kind"], f["pipeline_execution_id"]
        if kind in ("anomaly", "overdue") and execution in index:
            flags[index[execution]] |= FLAG_BITS[f["metric"] or "duration_seconds"]
        elif kind in ("late_start", "stale"):
            i = int(np.searchsorted(starts, float(f["subject"]), side="left"))
            if i < len(rows):
                flags[i] |= FLAG_BITS["start" if kind == "late_start" else "stale"]
    return flags


def history_of(
    rows: Sequence[Mapping[str, Any]], findings: Sequence[Mapping[str, Any]] = ()
) -> History:
    """`WINDOW` rows in time order (and the window's learned findings) → a `History`."""
    columns: dict[str, list[float]] = {m: [_num(r[m]) for r in rows] for m in METRICS}
    return History.of(
        [float(r["start"]) for r in rows],
        end=[_num(r["end"]) for r in rows],
        success=[r["success"] is True for r in rows],
        flags=_flags(rows, findings),
        excluded=[r["verdict"] == "excluded" for r in rows],
        fine=[r["verdict"] == "fine" for r in rows],
        **columns,
    )


def settings_of(
    row: Mapping[str, Any], windows: tuple[tuple[float, float], ...] = ()
) -> LearnSettings:
    retrain: datetime | None = row.get("retrain_from")
    return LearnSettings(
        sensitivity=cast(Sensitivity, row["sensitivity"]),
        maintenance_windows=windows,
        retrain_from=None if retrain is None else retrain.timestamp(),
    )


async def learn_pipeline(
    conn: AsyncConnection,
    pipeline_id: int,
    now: datetime,
    settings: LearnSettings,
    latest_start: datetime | None,
) -> Expectations:
    """Learn one pipeline from its bounded window at `now` and keep the result."""
    since = now - timedelta(days=settings.window_days)
    window = {"pipeline_id": pipeline_id, "since": since, "now": now}
    result = await conn.execute(WINDOW, window | {"max_runs": settings.max_runs})
    rows = [dict(r._mapping) for r in result][::-1]
    findings = [dict(r._mapping) for r in await conn.execute(FLAGGED, window)]
    expectations = learn(history_of(rows, findings), now.timestamp(), settings)
    await conn.execute(
        SAVE,
        {
            "pipeline_id": pipeline_id,
            "expectations": json.dumps(expectations.to_json(), allow_nan=False),
            "now": now,
            "learned_through": latest_start,
        },
    )
    return expectations


async def learn_stale(
    conn: AsyncConnection, now: datetime, *, batch: int, relearn_after: timedelta
) -> dict[str, Any]:
    """Relearn up to `batch` pipelines with runs newer than what they were learned from."""
    params = {"relearn_before": now - relearn_after, "batch": batch}
    stale = [dict(r._mapping) for r in await conn.execute(STALE_PIPELINES, params)]
    since = now - timedelta(days=LearnSettings().window_days)
    windows = await windows_of(conn, [int(r["id"]) for r in stale], since, now)
    learned = 0
    for row in stale:
        settings = settings_of(row, windows.get(int(row["id"]), ()))
        exp = await learn_pipeline(conn, row["id"], now, settings, row["latest_start"])
        learned += exp.cadence is not None or bool(exp.bands) or exp.freshness is not None
    return {
        "status": "completed",
        "evaluated_at": now,
        "pipelines_learned": len(stale),
        "with_expectations": learned,
        "more": len(stale) == batch,
    }


def epoch(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)
