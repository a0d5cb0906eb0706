"""The real checks run at the same moment by several replicas log each finding once.

Leadership keeps the scheduled checks on one replica, but a handover mid-tick, an operator's
`POST /timeliness` on another replica, or a slow leader that lost its lock while its job ran
can all make two runs of one check overlap. The log tables' unique keys and the checks'
`INSERT … ON CONFLICT DO NOTHING … RETURNING` make that harmless: exactly one run reports a
finding as newly logged and the log holds one row per finding.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx

from tests.check_helpers import between_quarter_hours, make_pipeline, run, start
from tests.conftest import LiveServer
from watcher.checks import freshness, missed_runs, timeliness

HOUR = timedelta(hours=1)
RUNS = 6


def _concurrently(live: LiveServer, check: Any) -> list[dict[str, Any]]:
    async def go() -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(check() for _ in range(RUNS))))

    return live.run(go)


def _newly_logged(results: list[dict[str, Any]]) -> list[int]:
    return [f["pipeline_id"] for r in results for f in r["findings"] if f["newly_logged"]]


def test_overlapping_runs_of_each_check_log_each_finding_once(
    client: httpx.Client, live: LiveServer
) -> None:
    between_quarter_hours(live.clock)  # the missed run must not change between the runs
    now = live.clock.now()
    stale = make_pipeline(client, "stale", freshness_number=1, freshness_datepart="hour")
    run(client, stale, now - 3 * HOUR, now - 3 * HOUR + timedelta(minutes=5), inserts=1)
    slow = make_pipeline(client, "slow", timeliness_number=5, timeliness_datepart="minute")
    start(client, slow, now - timedelta(minutes=30))
    idle = make_pipeline(client, "idle", schedule="0 * * * *", schedule_grace_seconds=60)
    live.clock.advance(2 * HOUR)
    services = live.services

    checks = {
        "freshness_pipeline_log": (stale, lambda: freshness.run(services)),
        "timeliness_pipeline_execution_log": (slow, lambda: timeliness.run(services, 240)),
        "missed_run_log": (idle, lambda: missed_runs.run(services)),
    }
    for table, (pipeline_id, check) in checks.items():
        results = _concurrently(live, check)
        assert all(pipeline_id in {f["pipeline_id"] for f in r["findings"]} for r in results)
        assert _newly_logged(results) == [pipeline_id], table
        rows = live.sql(f"SELECT pipeline_id FROM {table}")
        assert rows == [{"pipeline_id": pipeline_id}], table
