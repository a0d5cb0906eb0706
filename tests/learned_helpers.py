"""Seeding run history for the learned-expectation tests: a daily pipeline at 02:30 UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

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
