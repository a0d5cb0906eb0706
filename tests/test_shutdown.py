"""Graceful shutdown of a real `python -m watcher serve` on SIGTERM, under load."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx

from tests.conftest import free_port
from watcher.db.embedded import EmbeddedPostgres, start_embedded


def serve(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "watcher", "serve"], env=env, stdout=out, stderr=out
        )


def base_env(port: int, **extra: str) -> dict[str, str]:
    env = {
        **{k: v for k, v in os.environ.items() if k != "WATCHER_DATABASE_URL"},
        "WATCHER_PORT": str(port),
        "WATCHER_AUTH_ENABLED": "false",
        "WATCHER_LOG_LEVEL": "warning",
        "WATCHER_LOG_JSON": "true",
        "WATCHER_LEADER_CHECK_INTERVAL_SECONDS": "0.5",
        "WATCHER_LEADER_LOCK_ID": str(random.randint(1, 2**31)),
        **extra,
    }
    return env


def wait_leader(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            r = httpx.get(f"{url}/health", timeout=2)
            if r.status_code == 200 and r.json()["scheduler"]["is_leader"]:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"no leader: {log.read_text()}")


def finish(proc: subprocess.Popen[bytes]) -> None:
    """After a failure: stop gracefully (so the embedded server stops too), kill if stuck."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def alive(pid: int) -> bool:
    """Running, not merely a zombie waiting for a reaper."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class Load:
    """Threads starting and ending executions until the server goes away (bounded)."""

    def __init__(self, url: str, pipeline_id: int, threads: int = 3) -> None:
        self.url = url
        self.pipeline_id = pipeline_id
        self.acked: list[str] = []
        self.bad: list[str] = []
        self.threads = [
            threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(threads)
        ]

    def _run(self, n: int) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as http:
            for i in range(2000):
                run_id = f"load-{n}-{i}"
                try:
                    r = http.post(
                        "/start_pipeline_execution",
                        json={"pipeline_id": self.pipeline_id, "run_id": run_id},
                    )
                except httpx.TransportError:
                    return  # the server stopped accepting
                if r.status_code != 201:
                    self.bad.append(f"{r.status_code} {r.text}")
                    return
                self.acked.append(run_id)

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for t in self.threads:
            t.join(60)


def slow_body(seconds: float) -> Iterator[bytes]:
    yield b'{"pipeline_name": "shutdown", '
    time.sleep(seconds)
    yield b'"run_id": "in-flight"}'


def test_sigterm_finishes_in_flight_requests_and_stops_embedded_postgres(
    tmp_path: Path,
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    data = tmp_path / "data"
    log = tmp_path / "watcher.log"
    proc = serve(base_env(port, WATCHER_DATA_DIR=str(data)), log)
    try:
        wait_leader(url, proc, log)
        postmaster = int((data / "postmaster.pid").read_text().split()[0])
        pipeline = httpx.post(
            f"{url}/pipeline", json={"name": "shutdown", "pipeline_type_name": "t"}
        )
        assert pipeline.status_code == 201
        slow: dict[str, httpx.Response] = {}

        def upload() -> None:
            headers = {"content-type": "application/json"}
            slow["r"] = httpx.post(
                f"{url}/start_pipeline_execution", content=slow_body(2.0), headers=headers
            )

        uploader = threading.Thread(target=upload, daemon=True)
        with Load(url, pipeline.json()["id"]) as load:
            uploader.start()
            time.sleep(0.7)  # load is flowing, the slow request is in flight
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            refused = False
            try:
                httpx.get(f"{url}/", timeout=2)
            except httpx.ConnectError:
                refused = True
            uploader.join(30)
        assert proc.wait(60) == 0, log.read_text()
    finally:
        finish(proc)
    output = log.read_text()
    assert refused, "a new connection was accepted after SIGTERM"
    assert slow["r"].status_code == 201, slow["r"].text  # the in-flight request completed
    assert load.bad == [], load.bad[:3]
    assert len(load.acked) > 10
    assert not alive(postmaster), f"embedded PostgreSQL still running: {output[-2000:]}"
    assert not (data / "postmaster.pid").exists()
    assert "Traceback" not in output, output

    db = start_embedded(data)
    try:
        rows = _fetch(db, "SELECT run_id FROM pipeline_execution")
    finally:
        db.stop()
    stored = {r["run_id"] for r in rows}
    assert set(load.acked) <= stored
    assert "in-flight" in stored
    print(f"\nshutdown under load: {len(load.acked)} acknowledged starts, all stored")


def _fetch(db: EmbeddedPostgres, sql: str) -> list[asyncpg.Record]:
    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(db.url)
        try:
            return list(await conn.fetch(sql))
        finally:
            await conn.close()

    return asyncio.run(go())


def test_sigterm_releases_leadership_at_once(postgres: EmbeddedPostgres, tmp_path: Path) -> None:
    port = free_port()
    env = base_env(port, WATCHER_DATABASE_URL=postgres.url)
    lock_id = int(env["WATCHER_LEADER_LOCK_ID"])
    log = tmp_path / "watcher.log"
    proc = serve(env, log)
    try:
        wait_leader(f"http://127.0.0.1:{port}", proc, log)
        assert not _try_lock(postgres, lock_id), "the leader does not hold the lock"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()
    finally:
        finish(proc)
    assert _try_lock(postgres, lock_id), "leadership still held after shutdown"
    assert "Traceback" not in log.read_text()


def _try_lock(db: EmbeddedPostgres, lock_id: int) -> bool:
    async def go() -> bool:
        conn = await asyncpg.connect(db.url)
        try:
            got = bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", lock_id))
            if got:
                await conn.execute("SELECT pg_advisory_unlock($1)", lock_id)
            return got
        finally:
            await conn.close()

    return asyncio.run(go())
