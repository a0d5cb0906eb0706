"""In-process scheduled jobs (APScheduler 3) with leader election over PostgreSQL.

Several replicas may run; leader-only jobs run on exactly one. Leadership is a session-level
advisory lock held on a dedicated connection (not from the pool): if the leader dies, its
connection closes, PostgreSQL releases the lock, and another replica takes it on its next
leadership check (within `leader_check_interval_seconds`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from watcher.clock import Clock
from watcher.events import Events, JobFinished, LeadershipChanged

log = logging.getLogger("watcher.scheduler")

JobFunc = Callable[[], Awaitable[object]]

# The lock lasts as long as the server believes in its connection. On a network that drops
# silently (no FIN, no RST) the server would keep that backend — and the lock, so no replica
# could lead — until TCP gave up: hours for an idle connection. Keepalives make it notice in
# about idle + interval × count (~1 min); tcp_user_timeout (ms) bounds the case keepalives
# miss, a reply left unacknowledged. Both are ignored on a Unix socket (the embedded server).
LOCK_CONNECTION_SETTINGS = {
    "tcp_keepalives_idle": "30",
    "tcp_keepalives_interval": "10",
    "tcp_keepalives_count": "3",
    "tcp_user_timeout": "60000",
}


@dataclass(frozen=True)
class Job:
    name: str
    func: JobFunc
    seconds: float
    leader_only: bool


class Scheduler:
    def __init__(
        self,
        dsn: str,
        *,
        lock_id: int,
        check_seconds: float,
        clock: Clock,
        events: Events,
        enabled: bool = True,
        stop_grace_seconds: float = 10.0,
    ) -> None:
        self._dsn = dsn
        self._lock_id = lock_id
        self._check_seconds = check_seconds
        self._clock = clock
        self._events = events
        self.enabled = enabled
        self.jobs: dict[str, Job] = {}
        self.is_leader = False
        self.running = False
        self.last_run: dict[str, float] = {}
        self._conn: asyncpg.Connection | None = None
        self._aps: AsyncIOScheduler | None = None
        self._stop_grace_seconds = stop_grace_seconds
        self._in_flight: set[asyncio.Task[Any]] = set()

    def add_job(
        self, name: str, func: JobFunc, *, seconds: float, leader_only: bool = True
    ) -> None:
        if name in self.jobs:
            raise ValueError(f"job {name!r} already registered")
        self.jobs[name] = Job(name, func, seconds, leader_only)

    async def start(self) -> None:
        if not self.enabled:
            return
        self._aps = AsyncIOScheduler(timezone="UTC")
        self._aps.add_job(
            self._check_leadership,
            "interval",
            seconds=self._check_seconds,
            id="leadership",
            max_instances=1,
            coalesce=True,
        )
        for job in self.jobs.values():
            self._aps.add_job(
                self.run_job,
                "interval",
                seconds=job.seconds,
                args=[job.name],
                id=job.name,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
            )
        await self._check_leadership()
        self._aps.start()
        self.running = True

    async def stop(self) -> None:
        """Stop scheduling, let the runs in flight finish, then release leadership.

        1. pause APScheduler: nothing new starts (its shutdown would cancel running jobs);
        2. wait up to `stop_grace_seconds` for the jobs and leadership checks in flight;
        3. shut APScheduler down, cancelling what outlived the grace, and wait for that;
        4. release the lock. Released earlier, another replica could start a job this one is
           still running, and the app disposes the engine under it right after `stop`.
        """
        if self._aps is not None:
            self._aps.pause()
            await self._drain()
            self._aps.shutdown(wait=False)
            self._aps = None
            await self._drain(cancel=True)
        self.running = False
        await self._release()

    async def _drain(self, *, cancel: bool = False) -> None:
        me = asyncio.current_task()
        tasks = {t for t in self._in_flight if t is not me and not t.done()}
        if not tasks:
            return
        if cancel:
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=5)
            return
        _, late = await asyncio.wait(tasks, timeout=self._stop_grace_seconds)
        if late:
            log.warning(
                "jobs still running at shutdown; cancelling them",
                extra={"grace_seconds": self._stop_grace_seconds, "jobs": len(late)},
            )

    @contextmanager
    def _tracked(self) -> Iterator[None]:
        """Count the current task as in flight (for `stop`) while the block runs."""
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
        try:
            yield
        finally:
            if task is not None:
                self._in_flight.discard(task)

    async def run_job(self, name: str) -> bool:
        """Run one job now (if this replica may); report its outcome. True on success."""
        job = self.jobs[name]
        if job.leader_only and not self.is_leader:
            return False
        started = time.perf_counter()
        success = True
        try:
            with self._tracked():
                await job.func()
        except Exception:
            success = False
            log.exception("job failed", extra={"job": name})
        duration = time.perf_counter() - started
        if success:
            self.last_run[name] = time.time()
        log.info(
            "job finished",
            extra={"job": name, "success": success, "duration_ms": round(duration * 1000, 1)},
        )
        self._events.emit(JobFinished(name, success, duration, self._clock.now()))
        return success

    async def _check_leadership(self) -> None:
        with self._tracked():
            leader = await self._hold_lock()
        if leader != self.is_leader:
            self.is_leader = leader
            log.info("leadership changed", extra={"is_leader": leader})
            self._events.emit(LeadershipChanged(leader))

    async def _hold_lock(self) -> bool:
        try:
            if self._conn is None or self._conn.is_closed():
                self._conn = None
                conn = await asyncpg.connect(
                    self._dsn, timeout=5, server_settings=LOCK_CONNECTION_SETTINGS
                )
                conn.add_termination_listener(self._on_lock_connection_lost)
                self._conn = conn
                await conn.execute("SET application_name = 'watcher-leader'")
                return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", self._lock_id))
            if self.is_leader:
                await self._conn.fetchval("SELECT 1", timeout=5)
                return True
            return bool(await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", self._lock_id))
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            log.warning("leadership check failed; not leading until the database answers")
            await self._release()
            return False

    def _on_lock_connection_lost(self, conn: object) -> None:
        """The lock died with its connection: stop leading now, not at the next check, or two
        replicas could both run leader-only jobs until then."""
        if conn is not self._conn:
            return
        self._conn = None
        if self.is_leader:
            self.is_leader = False
            log.warning("leadership lost: the lock connection closed")
            self._events.emit(LeadershipChanged(False))

    async def _release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.remove_termination_listener(self._on_lock_connection_lost)
            try:
                await asyncio.wait_for(conn.close(), timeout=5)
            except Exception:
                conn.terminate()
        if self.is_leader:
            self.is_leader = False
            log.info("leadership released")
            self._events.emit(LeadershipChanged(False))
