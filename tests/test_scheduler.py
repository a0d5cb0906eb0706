from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta

import httpx
import pytest

from tests.check_helpers import make_pipeline, run
from tests.conftest import LiveServer, start_live_server
from tests.conftest import test_settings as settings_for
from watcher.app import create_app
from watcher.clock import Clock
from watcher.db.embedded import EmbeddedPostgres
from watcher.events import Events, JobFinished
from watcher.scheduler import Scheduler

LOCK_ID = 0x5C4ED
CHECK_JOBS = ("timeliness", "freshness", "missed_runs", "anomaly_catchup")
INTERVAL = 0.4
LEADER_CHECK = 0.2


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def replica(postgres: EmbeddedPostgres) -> tuple[LiveServer, Counter[str]]:
    settings = settings_for(
        scheduler_enabled=True,
        leader_lock_id=LOCK_ID,
        leader_check_interval_seconds=LEADER_CHECK,
        **{f"{job}_interval_seconds": INTERVAL for job in CHECK_JOBS},
    )
    server = start_live_server(postgres.url, settings)
    runs: Counter[str] = Counter()
    server.services.events.subscribe(JobFinished, lambda e: runs.update([e.job]))
    return server, runs


@pytest.fixture
def replicas(postgres: EmbeddedPostgres) -> Iterator[list[tuple[LiveServer, Counter[str]]]]:
    started = [replica(postgres), replica(postgres)]
    yield started
    for server, _ in started:
        server.stop()


def leaders(replicas: list[tuple[LiveServer, Counter[str]]]) -> list[int]:
    return [i for i, (s, _) in enumerate(replicas) if s.services.scheduler.is_leader]


def test_one_replica_leads_and_only_it_runs_the_jobs(
    replicas: list[tuple[LiveServer, Counter[str]]], live: LiveServer
) -> None:
    assert wait_for(lambda: len(leaders(replicas)) == 1)
    [lead] = leaders(replicas)
    (leader, leader_runs), (_, follower_runs) = replicas[lead], replicas[1 - lead]
    began = time.monotonic()
    assert wait_for(lambda: all(leader_runs[job] >= 2 for job in CHECK_JOBS))
    elapsed = time.monotonic() - began
    assert leaders(replicas) == [lead]
    assert sum(follower_runs.values()) == 0
    for job in CHECK_JOBS:  # at most once per tick (plus the one in flight at the start)
        assert leader_runs[job] <= elapsed / INTERVAL + 2

    leader.stop()
    stopped = time.monotonic()
    follower = replicas[1 - lead][0]
    assert wait_for(lambda: follower.services.scheduler.is_leader, timeout=5)
    assert time.monotonic() - stopped < LEADER_CHECK + INTERVAL + 2
    assert wait_for(lambda: all(follower_runs[job] >= 1 for job in CHECK_JOBS))


def lock_holder(live: LiveServer) -> list[int]:
    rows = live.sql(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = :lock AND granted",
        lock=LOCK_ID,
    )
    return [r["pid"] for r in rows]


def leader_pids(replicas: list[tuple[LiveServer, Counter[str]]]) -> list[int]:
    pids = []
    for server, _ in replicas:
        scheduler = server.services.scheduler
        conn = scheduler._conn
        if scheduler.is_leader and conn is not None and not conn.is_closed():
            pids.append(conn.get_server_pid())
    return pids


def test_after_losing_the_lock_connection_exactly_one_replica_holds_and_believes_it(
    replicas: list[tuple[LiveServer, Counter[str]]], live: LiveServer
) -> None:
    """The killed connection's lock is gone; whichever replica takes it next (the old leader
    may win the race) is the only one that believes it leads, and it really holds the lock."""
    assert wait_for(lambda: len(leaders(replicas)) == 1)
    [before] = lock_holder(live)
    assert leader_pids(replicas) == [before]
    live.sql("SELECT pg_terminate_backend(:pid)", pid=before)

    def settled() -> bool:
        holder = lock_holder(live)
        return len(holder) == 1 and holder != [before] and leader_pids(replicas) == holder

    assert wait_for(settled, timeout=5 * LEADER_CHECK + 2)
    time.sleep(3 * LEADER_CHECK)
    assert len(leaders(replicas)) == 1 and settled()


def test_jobs_are_registered_with_their_intervals(postgres: EmbeddedPostgres) -> None:
    settings = settings_for(
        timeliness_interval_seconds=11,
        freshness_interval_seconds=12,
        missed_runs_interval_seconds=13,
        anomaly_catchup_interval_seconds=14,
        log_cleanup_interval_seconds=15,
        log_cleanup_retention_days=120,
    )
    jobs = create_app(settings, database_url=postgres.url).state.services.scheduler.jobs
    assert {name: jobs[name].seconds for name in (*CHECK_JOBS, "log_cleanup")} == {
        "timeliness": 11,
        "freshness": 12,
        "missed_runs": 13,
        "anomaly_catchup": 14,
        "log_cleanup": 15,
    }
    assert all(jobs[name].leader_only for name in (*CHECK_JOBS, "log_cleanup"))
    without = create_app(settings_for(), database_url=postgres.url).state.services.scheduler.jobs
    assert "log_cleanup" not in without and set(CHECK_JOBS) <= set(without)


async def test_leadership_is_dropped_the_moment_the_lock_connection_dies(
    postgres: EmbeddedPostgres,
) -> None:
    """Not at the next check (here 60 s away): until then two replicas could both lead."""
    from watcher.clock import Clock
    from watcher.events import Events, LeadershipChanged
    from watcher.scheduler import Scheduler

    events = Events()
    changes: list[bool] = []
    events.subscribe(LeadershipChanged, lambda e: changes.append(e.is_leader))
    scheduler = Scheduler(
        postgres.url, lock_id=0x5EED, check_seconds=60, clock=Clock(), events=events
    )
    await scheduler.start()
    try:
        assert scheduler.is_leader and changes == [True]
        assert scheduler._conn is not None
        pid = scheduler._conn.get_server_pid()
        await asyncio.to_thread(postgres.server.psql, f"SELECT pg_terminate_backend({pid});")
        for _ in range(100):
            if not leading(scheduler):
                break
            await asyncio.sleep(0.02)
        assert not leading(scheduler) and changes == [True, False]
    finally:
        await scheduler.stop()


async def test_every_job_is_scheduled_coalesced_and_never_overlapping(
    postgres: EmbeddedPostgres,
) -> None:
    """A replica that slept through several ticks runs a job once, not once per missed tick,
    and a slow run is never joined by the next one."""
    settings = settings_for(
        scheduler_enabled=True, leader_lock_id=0x5EEF, log_cleanup_retention_days=120
    )
    scheduler = create_app(settings, database_url=postgres.url).state.services.scheduler
    await scheduler.start()
    try:
        assert scheduler._aps is not None
        scheduled = {job.id: job for job in scheduler._aps.get_jobs()}
        assert set(scheduled) == {*scheduler.jobs, "leadership"}
        assert {*CHECK_JOBS, "log_cleanup", "metrics_snapshot"} <= set(scheduled)
        for name, job in scheduled.items():
            assert (name, job.coalesce, job.max_instances) == (name, True, 1)
    finally:
        await scheduler.stop()


def test_the_scheduled_log_cleanup_deletes_history_older_than_the_retention(
    client: httpx.Client, live: LiveServer, postgres: EmbeddedPostgres
) -> None:
    settings = settings_for(log_cleanup_retention_days=90, log_cleanup_batch_size=2)
    services = create_app(settings, database_url=postgres.url, clock=live.clock).state.services
    now = live.clock.now()
    pid = make_pipeline(client, "p")
    for days in (200, 120, 100, 95):
        started = now - timedelta(days=days)
        run(client, pid, started, started + timedelta(minutes=5))
    kept = run(client, pid, now - timedelta(days=10), now - timedelta(days=10) + timedelta(hours=1))
    for days in (120, 10):
        live.sql(
            "INSERT INTO freshness_pipeline_log (pipeline_id, last_dml_timestamp,"
            " evaluation_timestamp, freshness_number, freshness_datepart, used_child_config,"
            " created_at) VALUES (:p, :t, :t, 1, 'day', true, :t)",
            p=pid,
            t=now - timedelta(days=days),
        )
    try:
        live.run(services.scheduler.jobs["log_cleanup"].func)  # on the engine's loop
    finally:
        live.run(services.engine.dispose)
    executions = live.sql("SELECT id FROM pipeline_execution")
    assert executions == [{"id": kept}]
    logs = live.sql("SELECT created_at FROM freshness_pipeline_log")
    assert [r["created_at"] for r in logs] == [now - timedelta(days=10)]


async def test_the_lock_connection_asks_the_server_for_tcp_keepalives(
    postgres: EmbeddedPostgres,
) -> None:
    """Over the embedded server's Unix socket PostgreSQL ignores these settings (SHOW reads
    0), so read what the session was started with: its reset value, from the client."""
    from watcher.clock import Clock
    from watcher.events import Events
    from watcher.scheduler import LOCK_CONNECTION_SETTINGS, Scheduler

    scheduler = Scheduler(
        postgres.url, lock_id=0x5EF0, check_seconds=60, clock=Clock(), events=Events()
    )
    await scheduler.start()
    try:
        assert scheduler._conn is not None
        rows = await scheduler._conn.fetch(
            "SELECT name, reset_val, source FROM pg_settings WHERE name = ANY($1::text[])",
            list(LOCK_CONNECTION_SETTINGS),
        )
        assert {r["name"]: (r["reset_val"], r["source"]) for r in rows} == {
            "tcp_keepalives_idle": ("30", "client"),
            "tcp_keepalives_interval": ("10", "client"),
            "tcp_keepalives_count": ("3", "client"),
            "tcp_user_timeout": ("60000", "client"),
        }
    finally:
        await scheduler.stop()


def stoppable(postgres: EmbeddedPostgres, lock_id: int, grace: float) -> Scheduler:
    return Scheduler(
        postgres.url,
        lock_id=lock_id,
        check_seconds=60,
        clock=Clock(),
        events=Events(),
        stop_grace_seconds=grace,
    )


async def test_stop_lets_a_running_job_finish_before_releasing_leadership(
    postgres: EmbeddedPostgres,
) -> None:
    scheduler = stoppable(postgres, 0x5EEE, grace=10)
    began, finished = asyncio.Event(), asyncio.Event()
    leading_at_the_end: list[bool] = []

    async def slow_job() -> None:
        began.set()
        await asyncio.sleep(0.5)
        leading_at_the_end.append(scheduler.is_leader and scheduler._conn is not None)
        finished.set()

    scheduler.add_job("slow", slow_job, seconds=0.05)
    await scheduler.start()
    await asyncio.wait_for(began.wait(), 5)
    await scheduler.stop()
    assert finished.is_set()  # not cancelled by APScheduler's shutdown
    assert leading_at_the_end == [True]  # the lock was still held while it ran
    assert not scheduler.is_leader and scheduler._conn is None


async def test_stop_waits_no_longer_than_the_grace_then_cancels(
    postgres: EmbeddedPostgres,
) -> None:
    scheduler = stoppable(postgres, 0x5EEF, grace=0.3)
    began = asyncio.Event()
    cancelled: list[bool] = []

    async def stuck_job() -> None:
        began.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    scheduler.add_job("stuck", stuck_job, seconds=0.05)
    await scheduler.start()
    await asyncio.wait_for(began.wait(), 5)
    started = time.monotonic()
    await scheduler.stop()
    assert time.monotonic() - started < 3
    assert cancelled == [True] and not scheduler.is_leader


def leading(scheduler: Scheduler) -> bool:
    """Read the flag afresh (a plain attribute read after an assert narrows it for mypy)."""
    return scheduler.is_leader
