"""Two Watcher processes on one PostgreSQL: leader-only jobs run exactly once per interval,
and killing the leader (SIGKILL, a real crash) hands over within one leadership check."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.conftest import free_port
from watcher.db import migrate
from watcher.db.embedded import EmbeddedPostgres, start_embedded

JOB_SECONDS = 1.0
CHECK_SECONDS = 0.5

# A replica: the real app plus one leader-only job that records each run in a table.
REPLICA = f"""
import sys
import uvicorn
from sqlalchemy import text
from watcher.app import create_app
from watcher.config import Settings

url, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
settings = Settings(
    auth_enabled=False, scheduler_enabled=True, log_level="warning", log_json=True,
    leader_check_interval_seconds={CHECK_SECONDS}, leader_lock_id=0x7E57,
)
app = create_app(settings, database_url=url)
services = app.state.services

async def tick() -> None:
    async with services.engine.begin() as conn:
        await conn.execute(text("INSERT INTO replica_tick (replica) VALUES (:r)"), {{"r": name}})

services.scheduler.add_job("replica_tick", tick, seconds={JOB_SECONDS})
uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
"""


def sql(db: EmbeddedPostgres, statement: str) -> list[asyncpg.Record]:
    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(db.url)
        try:
            return list(await conn.fetch(statement))
        finally:
            await conn.close()

    return asyncio.run(go())


@pytest.fixture
def shared_db(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    db = start_embedded(tmp_path / "replicas-pg")
    migrate.upgrade(db.url)
    sql(
        db,
        "CREATE TABLE replica_tick (id serial PRIMARY KEY, replica text NOT NULL, "
        "at timestamptz NOT NULL DEFAULT clock_timestamp())",
    )
    yield db
    db.stop()


class Replica:
    def __init__(self, db: EmbeddedPostgres, name: str, script: Path, log: Path) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, str(script), db.url, str(self.port), name],
                stdout=out,
                stderr=out,
                env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
            )

    def health(self) -> dict[str, object] | None:
        try:
            r = httpx.get(f"{self.url}/health", timeout=2)
        except httpx.TransportError:
            return None
        return r.json() if r.status_code == 200 else None

    def is_leader(self) -> bool:
        health = self.health()
        return bool(health and health["scheduler"]["is_leader"])  # type: ignore[index]

    def wait(self, leader: bool | None, seconds: float = 60) -> float:
        began = time.monotonic()
        while time.monotonic() - began < seconds:
            assert self.proc.poll() is None, self.log.read_text()
            health = self.health()
            if health is not None and (leader is None or self.is_leader() == leader):
                return time.monotonic() - began
            time.sleep(0.05)
        raise AssertionError(f"{self.name} not ready: {self.log.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def ingest(replicas: list[Replica], stop: threading.Event, sent: list[int]) -> None:
    """Background load: executions started alternately on both replicas (bounded)."""
    clients = [httpx.Client(base_url=r.url, timeout=5) for r in replicas]
    try:
        clients[0].post("/pipeline", json={"name": "replicated", "pipeline_type_name": "t"})
        for i in range(5000):
            if stop.is_set():
                return
            try:
                clients[i % 2].post(
                    "/start_pipeline_execution",
                    json={"pipeline_name": "replicated", "run_id": f"r-{i}"},
                )
                sent[0] += 1
            except httpx.TransportError:
                pass  # the killed replica
            time.sleep(0.01)
    finally:
        for c in clients:
            c.close()


def ticks(db: EmbeddedPostgres) -> list[tuple[str, datetime]]:
    return [
        (r["replica"], r["at"]) for r in sql(db, "SELECT replica, at FROM replica_tick ORDER BY at")
    ]


def test_one_leader_runs_each_job_once_and_hands_over_on_crash(
    shared_db: EmbeddedPostgres, tmp_path: Path
) -> None:
    script = tmp_path / "replica.py"
    script.write_text(REPLICA)
    a = Replica(shared_db, "a", script, tmp_path / "a.log")
    b: Replica | None = None
    stop = threading.Event()
    sent = [0]
    try:
        a.wait(leader=True)
        b = Replica(shared_db, "b", script, tmp_path / "b.log")
        b.wait(leader=None)
        load = threading.Thread(target=ingest, args=([a, b], stop, sent), daemon=True)
        load.start()
        time.sleep(4 * JOB_SECONDS)
        assert not b.is_leader()
        before = ticks(shared_db)

        a.proc.send_signal(signal.SIGKILL)  # a crash: no graceful release
        killed = datetime.now().astimezone()
        handover = b.wait(leader=True, seconds=10)
        time.sleep(3 * JOB_SECONDS)
        stop.set()
        load.join(10)
        after = ticks(shared_db)
    finally:
        stop.set()
        a.stop()
        if b is not None:
            b.stop()

    assert {r for r, _ in before} == {"a"}, before
    assert len(before) >= 3
    by_b = [at for r, at in after if r == "b"]
    assert by_b and all(at > killed for at in by_b), "b ran the job while a was leader"
    assert [r for r, at in after if at > killed] == ["b"] * len(by_b)
    gaps = [(y - x).total_seconds() for (_, x), (_, y) in itertools.pairwise(after)]
    assert min(gaps) > JOB_SECONDS / 2, f"a job ran twice in one interval: {gaps}"
    assert max(gaps) < 2 * JOB_SECONDS + CHECK_SECONDS, f"an interval was skipped: {gaps}"
    first_b = (by_b[0] - killed).total_seconds()
    assert handover <= CHECK_SECONDS + 1.0, handover
    assert first_b <= JOB_SECONDS + CHECK_SECONDS + 1.0, first_b
    assert sent[0] > 50
    print(
        f"\nreplicas: {len(after)} runs, gaps {min(gaps):.2f}-{max(gaps):.2f} s, "
        f"handover {handover:.2f} s, first run by the new leader {first_b:.2f} s after the "
        f"kill, {sent[0]} requests of load"
    )
