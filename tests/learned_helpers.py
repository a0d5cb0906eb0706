"""Seeding run history for the learned-expectation tests: a daily pipeline at 02:30 UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from watcher.expectations import Expectations, History, learn

SEED_RUNS = """
INSERT INTO pipeline_execution (pipeline_id, start_date, end_date, completed_successfully,
    duration_seconds, total_rows, inserts, hour_recorded, date_recorded)
SELECT :pid, s, s + make_interval(secs => :duration), true, :duration, :rows, :rows,
    extract(hour FROM s AT TIME ZONE 'UTC'), (s AT TIME ZONE 'UTC')::date
FROM unnest(CAST(:starts AS timestamptz[])) s;
INSERT INTO pipeline_execution_closure (ancestor_id, descendant_id, depth)
SELECT id, id, 0 FROM pipeline_execution e WHERE pipeline_id = :pid
  AND NOT EXISTS (SELECT 1 FROM pipeline_execution_closure c WHERE c.descendant_id = e.id)
"""


def daily_starts(now: datetime, days: int, hour: int = 2, minute: int = 30) -> list[datetime]:
    """`days` daily starts at hour:minute UTC (seconds of jitter), the last one before `now`."""
    today = now.astimezone(UTC).replace(hour=hour, minute=minute, second=0, microsecond=0)
    last = today if today < now else today - timedelta(days=1)
    return [last - timedelta(days=d) + timedelta(seconds=(d * 37) % 90) for d in range(days)][::-1]


def seed(
    live: Any, pid: int, starts: list[datetime], duration: float = 600, rows: int = 1000
) -> None:
    for statement in SEED_RUNS.split(";"):
        live.sql(statement, pid=pid, starts=starts, duration=float(duration), rows=rows)
    last_end = max(starts) + timedelta(seconds=duration)
    live.sql("UPDATE pipeline SET last_target_insert = :t WHERE id = :pid", t=last_end, pid=pid)


def learned_expectations(now: datetime | None = None) -> Expectations:
    """Expectations learned (pure) from 20 daily runs at 02:30 UTC of ~1,000 rows, ~10 min."""
    at = now or datetime(2024, 1, 1, tzinfo=UTC)
    starts = [t.timestamp() for t in daily_starts(at, 20)]
    noise = [(i * 7) % 11 for i in range(len(starts))]
    rows = [1000.0 + 10 * n for n in noise]
    return learn(
        History.of(
            starts,
            end=[s + 600 + n for s, n in zip(starts, noise, strict=True)],
            total_rows=rows,
            inserts=rows,
            updates=[0.0] * len(starts),
            soft_deletes=[0.0] * len(starts),
        ),
        at.timestamp(),
    )
