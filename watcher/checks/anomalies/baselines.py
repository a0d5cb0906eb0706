"""Running baseline summaries: what one evaluation reads, whatever the stored history.

`anomaly_baseline_day` holds, per (pipeline, UTC start hour, UTC day of the end), each
metric's count, mean, M2 = Σ(x − mean)², min and max over the executions that today's
definition keeps (successful, evaluated, value not null, not flagged for the metric), and the
latest end in the day. A baseline over a lookback of L days is then the merge (Chan et al.'s
pairwise update) of at most L + 1 day rows plus a direct read of the few rows no day row can
answer exactly:

- the first day of the window, which the window covers only from `end − L` on (read from
  the executions: one day of one pipeline-hour);
- the last day, when its row holds an end later than the execution's (a catch-up of an old
  execution; the usual case — evaluated right after its end — reads the day row);
- executions not evaluated yet (in no day row until their own evaluation adds them).

So the window expires exactly (a day row is dropped as a whole once the window starts after
it, its partial first day is read row by row) and the result equals the direct summary over
every row of the window (`DIRECT` in `evaluation`, the forced path) up to rounding. One
statement reads both parts, so it sees one snapshot: an evaluation committing meanwhile is
counted once, from its day row or from its unevaluated row, never both or neither.

Writes: evaluating executions adds them to their day rows in the same transaction as their
flags (`ADD`, one INSERT … ON CONFLICT DO UPDATE merging the batch's per-day summaries). A
change that takes values out — a flag set on an already-counted execution (forced
re-evaluation), an unflag, deleted executions — recomputes the affected day rows from their
executions (`REBUILD`: one pipeline-hour-day each), since a min or max cannot be un-merged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from watcher.checks.statistics import Summary
from watcher.db.schema import ANOMALY_METRICS

PARTS = ("n", "mean", "m2", "lo", "hi")
DAY = "CAST(timezone('UTC', {0}) AS date)"  # the UTC day of a timestamptz


def day_start(column: str) -> str:
    """The timestamptz at 00:00 UTC of a date expression."""
    return f"timezone('UTC', CAST({column} AS timestamp))"


def _kept(metric: str, row: str = "b") -> str:
    return (
        f"{row}.{metric} IS NOT NULL"
        f" AND ({row}.anomaly_flags -> '{metric}') IS DISTINCT FROM 'true'::jsonb"
    )


def _aggregates(metric: str, keep: str, row: str = "b") -> list[str]:
    value = f"CAST({row}.{metric} AS double precision)"
    where = f"FILTER (WHERE {keep})"
    return [
        f"count({value}) {where}",
        f"avg({value}) {where}",
        f"COALESCE(var_samp({value}) {where} * (count({value}) {where} - 1), 0)",
        f"min({value}) {where}",
        f"max({value}) {where}",
    ]


_COLUMNS = [f"{m}_{p}" for m in ANOMALY_METRICS for p in PARTS]
_SUMMARY_SELECT = ", ".join(
    f"{agg} AS {m}_{p}"
    for m in ANOMALY_METRICS
    for p, agg in zip(PARTS, _aggregates(m, _kept(m)), strict=True)
)


def _merge(metric: str) -> str:
    """SET clauses merging EXCLUDED's summary of `metric` into the stored one (Chan)."""
    t, x = f"d.{metric}", f"EXCLUDED.{metric}"
    n = f"({t}_n + {x}_n)"
    delta = f"({x}_mean - {t}_mean)"
    return ", ".join(
        [
            f"{metric}_mean = CASE WHEN {x}_n = 0 THEN {t}_mean WHEN {t}_n = 0 THEN {x}_mean"
            f" ELSE {t}_mean + {delta} * {x}_n / {n} END",
            f"{metric}_m2 = CASE WHEN {x}_n = 0 THEN {t}_m2 WHEN {t}_n = 0 THEN {x}_m2"
            f" ELSE {t}_m2 + {x}_m2 + {delta} * {delta} * {t}_n * {x}_n / {n} END",
            f"{metric}_lo = LEAST({t}_lo, {x}_lo)",
            f"{metric}_hi = GREATEST({t}_hi, {x}_hi)",
            f"{metric}_n = {n}",
        ]
    )


_INSERT = f"""
INSERT INTO anomaly_baseline_day AS d (pipeline_id, hour_recorded, day, max_end,
    {", ".join(_COLUMNS)})
"""
# Executions just evaluated (in no day row yet), merged into their day rows. Sorted, so two
# transactions merging overlapping days lock them in the same order (no deadlock).
ADD = text(f"""
{_INSERT}
SELECT b.pipeline_id, b.hour_recorded, {DAY.format("b.end_date")}, max(b.end_date),
       {_SUMMARY_SELECT}
FROM pipeline_execution b
WHERE b.id = ANY(CAST(:ids AS bigint[])) AND b.completed_successfully
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
ON CONFLICT (pipeline_id, hour_recorded, day) DO UPDATE SET
    max_end = GREATEST(d.max_end, EXCLUDED.max_end),
    {", ".join(_merge(m) for m in ANOMALY_METRICS)}
""")
KEYS = text(f"""
SELECT DISTINCT pipeline_id, hour_recorded, {DAY.format("end_date")} AS day
FROM pipeline_execution WHERE id = ANY(CAST(:ids AS bigint[])) AND completed_successfully
""")
# Day rows recomputed from their executions (an empty day keeps a row of zero counts).
REBUILD = text(f"""
{_INSERT}
SELECT k.pipeline_id, k.hour_recorded, k.day, max(b.end_date), {_SUMMARY_SELECT}
FROM unnest(CAST(:pipeline_ids AS bigint[]), CAST(:hours AS smallint[]),
            CAST(:days AS date[])) AS k(pipeline_id, hour_recorded, day)
LEFT JOIN pipeline_execution b
  ON b.pipeline_id = k.pipeline_id AND b.hour_recorded = k.hour_recorded
 AND b.completed_successfully AND b.anomaly_checked_at IS NOT NULL
 AND b.end_date >= {day_start("k.day")} AND b.end_date < {day_start("k.day + 1")}
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
ON CONFLICT (pipeline_id, hour_recorded, day) DO UPDATE SET
    max_end = EXCLUDED.max_end, {", ".join(f"{c} = EXCLUDED.{c}" for c in _COLUMNS)}
""")

# Every day row from the executions (the migration's backfill; bulk loads, e.g. benchmarks).
REBUILD_ALL = text(f"""
{_INSERT}
SELECT b.pipeline_id, b.hour_recorded, {DAY.format("b.end_date")}, max(b.end_date),
       {_SUMMARY_SELECT}
FROM pipeline_execution b
WHERE b.completed_successfully AND b.anomaly_checked_at IS NOT NULL
GROUP BY 1, 2, 3
ON CONFLICT (pipeline_id, hour_recorded, day) DO UPDATE SET
    max_end = EXCLUDED.max_end, {", ".join(f"{c} = EXCLUDED.{c}" for c in _COLUMNS)}
""")

Key = tuple[int, int, date]


async def rebuild_all(conn: AsyncConnection) -> None:
    """Recompute every day row (after executions were written behind Watcher's back)."""
    await conn.execute(text("DELETE FROM anomaly_baseline_day"))
    await conn.execute(REBUILD_ALL)


async def add(conn: AsyncConnection, ids: Sequence[int]) -> None:
    """Merge just-evaluated (successful, until now unevaluated) executions into their days."""
    if ids:
        await conn.execute(ADD, {"ids": list(ids)})


async def keys_of(conn: AsyncConnection, ids: Sequence[int]) -> list[Key]:
    """The day rows that executions `ids` count in (read before deleting them)."""
    if not ids:
        return []
    rows = await conn.execute(KEYS, {"ids": list(ids)})
    return [(r.pipeline_id, r.hour_recorded, r.day) for r in rows]


async def rebuild(conn: AsyncConnection, keys: Iterable[Key]) -> None:
    """Recompute day rows from their executions (values taken out: flags, deletions)."""
    ordered = sorted(set(keys))
    if not ordered:
        return
    pipeline_ids, hours, days = (list(c) for c in zip(*ordered, strict=True))
    await conn.execute(REBUILD, {"pipeline_ids": pipeline_ids, "hours": hours, "days": days})


# --- reading -----------------------------------------------------------------------------

_SINCE = [f"since_{m}" for m in ANOMALY_METRICS]
_SINCE_DAY_END = {m: day_start(f"{DAY.format(f'x.since_{m}')} + 1") for m in ANOMALY_METRICS}


def _direct_keep(metric: str) -> str:
    """Whether a directly read row counts for `metric`: in the window, kept, and not in a
    day row this evaluation reads (unevaluated, first day of the window, or an unusable
    last day)."""
    return (
        f"b.end_date >= x.since_{metric} AND b.end_date <= x.end_date AND {_kept(metric)}"
        f" AND (b.anomaly_checked_at IS NULL OR b.end_date < {_SINCE_DAY_END[metric]}"
        f" OR (x.last_day_direct AND b.end_date >= {day_start('x.end_day')}))"
    )


_DIRECT_SELECT = ", ".join(
    f"{agg} AS {m}_{p}"
    for m in ANOMALY_METRICS
    for p, agg in zip(PARTS, _aggregates(m, _direct_keep(m)), strict=True)
)
_SAME = (
    "b.pipeline_id = x.pipeline_id AND b.hour_recorded = x.hour_recorded"
    " AND b.completed_successfully"
)
# Bucket rows (kind 'day') and, per execution, the summary of what is read directly (kind
# 'rows'), in one statement: one snapshot. Direct reads are three narrow index ranges of
# ix_pipeline_execution_baseline, never the whole window.
READ = text(f"""
WITH x AS (
    SELECT u.execution_id, e.pipeline_id, e.hour_recorded, e.end_date, u.{", u.".join(_SINCE)},
           LEAST(u.{", u.".join(_SINCE)}) AS since_min,
           {day_start(f"{DAY.format('GREATEST(u.' + ', u.'.join(_SINCE) + ')')} + 1")}
               AS first_days_end,
           {DAY.format("e.end_date")} AS end_day,
           COALESCE((SELECT d.max_end > e.end_date FROM anomaly_baseline_day d
                     WHERE d.pipeline_id = e.pipeline_id AND d.hour_recorded = e.hour_recorded
                       AND d.day = {DAY.format("e.end_date")}), false) AS last_day_direct
    FROM unnest(CAST(:ids AS bigint[]),
                {", ".join(f"CAST(:{s} AS timestamptz[])" for s in _SINCE)})
         AS u(execution_id, {", ".join(_SINCE)})
    JOIN pipeline_execution e ON e.id = u.execution_id
),
candidates AS (
    SELECT x.execution_id, b.id FROM x JOIN pipeline_execution b ON {_SAME}
     AND b.end_date >= x.since_min AND b.end_date < x.first_days_end
    UNION
    SELECT x.execution_id, b.id FROM x JOIN pipeline_execution b ON {_SAME}
     AND b.anomaly_checked_at IS NULL AND b.end_date >= x.since_min AND b.end_date <= x.end_date
    UNION
    SELECT x.execution_id, b.id FROM x JOIN pipeline_execution b ON {_SAME}
     AND x.last_day_direct AND b.end_date >= {day_start("x.end_day")}
     AND b.end_date <= x.end_date
)
SELECT 'rows' AS kind, x.execution_id, CAST(NULL AS date) AS day,
       CAST(NULL AS timestamptz) AS max_end,
       {_DIRECT_SELECT}
FROM x LEFT JOIN candidates c ON c.execution_id = x.execution_id
          AND c.id <> ALL(CAST(:ids AS bigint[]))
LEFT JOIN pipeline_execution b ON b.id = c.id
GROUP BY x.execution_id
UNION ALL
SELECT 'day', x.execution_id, d.day, d.max_end, d.{", d.".join(_COLUMNS)}
FROM x JOIN anomaly_baseline_day d
  ON d.pipeline_id = x.pipeline_id AND d.hour_recorded = x.hour_recorded
 AND d.day > {DAY.format("x.since_min")} AND d.day <= x.end_day
""")


def summary(row: Mapping[Any, Any], metric: str) -> Summary:
    n, mean, m2, lo, hi = (row[f"{metric}_{p}"] for p in PARTS)
    if not n or mean is None or lo is None or hi is None:
        return Summary()
    return Summary(int(n), float(mean), float(m2 or 0.0), float(lo), float(hi))


def utc_day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


async def read(
    conn: AsyncConnection, executions: Sequence[Mapping[str, Any]], since: Mapping[str, list[Any]]
) -> dict[tuple[int, str], Summary]:
    """Per (execution id, metric with a window), the baseline without the batch's own
    executions. `since[f"since_{metric}"][i]` is execution i's window start (None: no rule)."""
    params: dict[str, Any] = {"ids": [e["id"] for e in executions], **since}
    ends = {e["id"]: e["end_date"] for e in executions}
    starts = {
        e["id"]: {m: since[f"since_{m}"][i] for m in ANOMALY_METRICS}
        for i, e in enumerate(executions)
    }
    out: dict[tuple[int, str], Summary] = {}
    for row in await conn.execute(READ, params):
        m = row._mapping
        execution_id = m["execution_id"]
        for metric in ANOMALY_METRICS:
            start = starts[execution_id][metric]
            if start is None:
                continue
            if m["kind"] == "day":
                end = ends[execution_id]
                if m["day"] <= utc_day(start):
                    continue  # the window's first day: read row by row
                if m["day"] == utc_day(end) and m["max_end"] is not None and m["max_end"] > end:
                    continue  # the last day holds a later end: read row by row
            key = (execution_id, metric)
            out[key] = out.get(key, Summary()).merge(summary(m, metric))
    return out


def window_start(end: datetime, lookback_days: int) -> datetime:
    return end - timedelta(days=lookback_days)
