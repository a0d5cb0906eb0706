"""Watcher's own outage, with real processes: `watcher serve` on a real PostgreSQL is
SIGKILLed for 20 seconds and restarted (and, separately, its PostgreSQL is stopped for 15). Runs that happened meanwhile are replayed with their
own times (as the client's spool does); the checks, running every second, raise no
missed-run, staleness or overdue finding caused by the gap, and the pipelines that truly
stopped during it are reported once the catch-up (10 s here) is over."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.check_helpers import end, make_pipeline, run, start
from tests.conftest import free_port
from tests.test_faults import start_postgres, stop_postgres
from watcher.db.embedded import EmbeddedPostgres, start_embedded

CATCH_UP = 10.0
GAP = 20.0
SECOND = timedelta(seconds=1)


def sql(db: EmbeddedPostgres, statement: str) -> list[dict[str, Any]]:
    async def go() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(db.url)
        try:
            return [dict(r) for r in await conn.fetch(statement)]
        finally:
            await conn.close()

    return asyncio.run(go())


@pytest.fixture
def db(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    server = start_embedded(tmp_path / "outage-pg")
    yield server
    server.stop()
    # pgserver only stops the postmaster it started; a test may have restarted it.
    if (server.data_dir / "postmaster.pid").exists():
        stop_postgres(server)


class Serve:
    """One `watcher serve` process with every check each second and a short catch-up."""

    def __init__(self, db: EmbeddedPostgres, port: int, log: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        env = {
            **os.environ,
            "WATCHER_DATABASE_URL": db.url,
            "WATCHER_PORT": str(port),
            "WATCHER_AUTH_ENABLED": "false",
            "WATCHER_LOG_JSON": "true",
            "WATCHER_LOG_LEVEL": "warning",
            "WATCHER_LEADER_CHECK_INTERVAL_SECONDS": "0.5",
            "WATCHER_INGEST_HEARTBEAT_INTERVAL_SECONDS": "0.5",
            "WATCHER_INGEST_CATCH_UP_SECONDS": str(CATCH_UP),
            "WATCHER_MISSED_RUNS_INTERVAL_SECONDS": "1",
            "WATCHER_FRESHNESS_INTERVAL_SECONDS": "1",
            "WATCHER_TIMELINESS_INTERVAL_SECONDS": "1",
        }
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "watcher", "serve"], env=env, stdout=out, stderr=out
            )

    def wait_ready(self, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                health = httpx.get(f"{self.url}/health", timeout=1)
                if health.status_code == 200 and health.json()["scheduler"]["is_leader"]:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"watcher did not become ready: {self.log.read_text()}")

    def metric(self, name: str, **labels: str) -> float:
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        prefix = f"{name}{{{want}}} " if labels else f"{name} "
        for line in text.splitlines():
            if line.startswith(prefix):
                return float(line.removeprefix(prefix))
        return 0.0

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def sleep_until(moment: datetime) -> None:
    time.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()))


def findings(db: EmbeddedPostgres) -> dict[str, list[dict[str, Any]]]:
    def rows(table: str) -> list[dict[str, Any]]:
        return sql(
            db,
            f"SELECT p.name, l.created_at FROM {table} l JOIN pipeline p ON p.id = l.pipeline_id"
            " ORDER BY p.name",
        )

    return {
        "missed": rows("missed_run_log"),
        "stale": rows("freshness_pipeline_log"),
        "overdue": rows("timeliness_pipeline_execution_log"),
    }


def names(found: dict[str, list[dict[str, Any]]]) -> dict[str, list[str]]:
    return {kind: [r["name"] for r in rows] for kind, rows in found.items()}


def test_no_finding_from_watchers_own_outage_and_stopped_pipelines_are_reported(
    db: EmbeddedPostgres, tmp_path: Path
) -> None:
    port, log = free_port(), tmp_path / "watcher.log"
    first = Serve(db, port, log)
    second: Serve | None = None
    try:
        first.wait_ready()
        # The kill straddles a minute boundary, when the hourly crons below are due.
        boundary = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        if (boundary - datetime.now(UTC)).total_seconds() < 25:
            boundary += timedelta(minutes=1)
        killed_at = boundary - 8 * SECOND
        sleep_until(boundary - 22 * SECOND)
        http = httpx.Client(base_url=first.url, timeout=10)
        fresh: dict[str, Any] = {"freshness_number": 1, "freshness_datepart": "minute"}
        timely: dict[str, Any] = {"timeliness_number": 1, "timeliness_datepart": "minute"}
        cron: dict[str, Any] = {"schedule": f"{boundary.minute} * * * *"}
        ids = {
            "fresh_replayed": make_pipeline(http, "fresh_replayed", **fresh),
            "fresh_stopped": make_pipeline(http, "fresh_stopped", **fresh),
            "long_ends": make_pipeline(http, "long_ends", **timely),
            "long_stuck": make_pipeline(http, "long_stuck", **timely),
            "cron_replayed": make_pipeline(http, "cron_replayed", **cron),
            "cron_stopped": make_pipeline(http, "cron_stopped", **cron),
        }
        for name in ("fresh_replayed", "fresh_stopped"):  # stale 15 s into the gap
            run(http, ids[name], killed_at - 47 * SECOND, killed_at - 45 * SECOND, inserts=1)
        long_ends = start(http, ids["long_ends"], killed_at - 50 * SECOND)  # overdue in it
        start(http, ids["long_stuck"], killed_at - 50 * SECOND)
        http.close()

        sleep_until(killed_at)
        assert names(findings(db)) == {"missed": [], "stale": [], "overdue": []}
        assert sql(db, "SELECT count(*) AS n FROM ingest_heartbeat")[0]["n"] >= 1
        first.kill()
        sleep_until(killed_at + GAP * SECOND)
        second = Serve(db, port, log)
        second.wait_ready()
        time.sleep(2)  # every check ran at least once since the restart
        assert names(findings(db)) == {"missed": [], "stale": [], "overdue": []}, log.read_text()
        assert second.metric("watcher_ingest_catching_up") == 1
        assert second.metric("watcher_ingest_gap_seconds") >= GAP - 2

        # The runs made during the gap arrive now, with their own times.
        http = httpx.Client(base_url=second.url, timeout=10)
        run(http, ids["fresh_replayed"], killed_at + 3 * SECOND, killed_at + 5 * SECOND, inserts=1)
        end(http, long_ends, killed_at + 5 * SECOND)  # 55 s: on time
        run(http, ids["cron_replayed"], boundary + SECOND, boundary + 2 * SECOND)
        http.close()

        resumed = sql(db, "SELECT max(segment_start) AS at FROM ingest_heartbeat")[0]["at"]
        caught_up = resumed + timedelta(seconds=CATCH_UP)
        stopped = {
            "missed": ["cron_stopped"],
            "stale": ["fresh_stopped"],
            "overdue": ["long_stuck"],
        }
        deadline = time.monotonic() + CATCH_UP + 30
        while names(findings(db)) != stopped and time.monotonic() < deadline:
            time.sleep(0.5)
        found = findings(db)
        assert names(found) == stopped, log.read_text()
        # Held back until the catch-up was over (a new window, e.g. a beat delayed under load,
        # only delays them further), never reported from the gap itself.
        assert all(r["created_at"] >= caught_up for rows in found.values() for r in rows)
        for check in ("missed_runs", "freshness", "timeliness"):
            assert (
                second.metric("watcher_checks_suppressed_total", check=check, reason="ingest_gap")
                > 0
            )
        time.sleep(2)  # and nothing more comes
        assert names(findings(db)) == stopped
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_a_database_outage_is_a_blind_window_too(db: EmbeddedPostgres, tmp_path: Path) -> None:
    log = tmp_path / "watcher.log"
    serve = Serve(db, free_port(), log)
    try:
        serve.wait_ready()
        http = httpx.Client(base_url=serve.url, timeout=10)
        fresh: dict[str, Any] = {"freshness_number": 1, "freshness_datepart": "minute"}
        ids = {name: make_pipeline(http, name, **fresh) for name in ("replayed", "stopped")}
        outage = datetime.now(UTC) + 2 * SECOND
        for pid in ids.values():  # stale 10 s into the outage
            run(http, pid, outage - 52 * SECOND, outage - 50 * SECOND, inserts=1)
        sleep_until(outage)
        stop_postgres(db)
        time.sleep(12)
        # The process lives and is scraped (from memory): it says how long it has not beaten.
        assert serve.metric("watcher_ingest_heartbeat_age_seconds") >= 10
        sleep_until(outage + 15 * SECOND)
        start_postgres(db)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            rows = sql(db, "SELECT replica, segment_start, beat_at FROM ingest_heartbeat")
            if len(rows) >= 2:
                break
            time.sleep(0.2)
        # One process, two segments: the hole between them is the outage.
        assert len({r["replica"] for r in rows}) == 1 and len(rows) == 2, rows
        rows.sort(key=lambda r: r["segment_start"])
        assert (rows[1]["segment_start"] - rows[0]["beat_at"]).total_seconds() >= 14
        time.sleep(2)  # the checks ran since the database came back
        assert names(findings(db))["stale"] == [], log.read_text()
        run(http, ids["replayed"], outage + 3 * SECOND, outage + 5 * SECOND, inserts=1)
        http.close()
        caught_up = rows[1]["segment_start"] + timedelta(seconds=CATCH_UP)
        deadline = time.monotonic() + CATCH_UP + 30
        while not names(findings(db))["stale"] and time.monotonic() < deadline:
            time.sleep(0.5)
        stale = findings(db)["stale"]
        assert [r["name"] for r in stale] == ["stopped"], log.read_text()
        assert stale[0]["created_at"] >= caught_up
        assert (
            serve.metric("watcher_checks_suppressed_total", check="freshness", reason="ingest_gap")
            > 0
        )
    finally:
        serve.stop()
