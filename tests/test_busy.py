"""A saturated connection pool is "busy", not "database unavailable": requests queue for a
connection (FIFO, up to `db_pool_timeout_seconds`) and, past that, are refused with 503,
Retry-After and a message saying busy. Real server, real PostgreSQL, a pool of one held by
the test so the saturation is certain rather than timed."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Iterator
from concurrent.futures import Future

import asyncpg
import httpx
import pytest

from tests.conftest import TABLES, LiveServer, start_live_server
from tests.conftest import test_settings as settings_for
from watcher.db.embedded import EmbeddedPostgres
from watcher.db.engine import BUSY_MESSAGE, is_outage, is_saturated, unavailable
from watcher.errors import Busy


def serve(postgres: EmbeddedPostgres, **overrides: object) -> Iterator[LiveServer]:
    live = start_live_server(postgres.url, settings_for(retry_after_seconds=2, **overrides))
    try:
        yield live
    finally:
        live.sql(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
        live.stop()


@pytest.fixture
def tiny(postgres: EmbeddedPostgres) -> Iterator[LiveServer]:
    """One pooled connection, a short queue."""
    yield from serve(postgres, db_pool_size=1, db_pool_timeout_seconds=0.5)


@pytest.fixture
def single(postgres: EmbeddedPostgres) -> Iterator[LiveServer]:
    """One pooled connection, the default queue time."""
    yield from serve(postgres, db_pool_size=1)


def hold_pool(live: LiveServer, seconds: float) -> Future[None]:
    """Check out the pool's connection(s) on the server's loop for `seconds`."""

    async def hold() -> None:
        async with live.services.engine.connect():
            await asyncio.sleep(seconds)

    started: Future[None] = asyncio.run_coroutine_threadsafe(hold(), live.loop)
    deadline = time.monotonic() + 5
    while live.services.engine.sync_engine.pool.checkedout() < 1:  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "the pool was never checked out"
        time.sleep(0.01)
    return started


def create_pipeline(http: httpx.Client, name: str) -> httpx.Response:
    return http.post("/pipeline", json={"name": name, "pipeline_type_name": "burst"})


def test_a_saturated_pool_answers_busy_with_retry_after(tiny: LiveServer) -> None:
    held = hold_pool(tiny, 3)
    with httpx.Client(base_url=tiny.url, timeout=10) as http:
        r = create_pipeline(http, "refused")
    held.result(10)
    assert r.status_code == 503, r.text
    assert r.headers["Retry-After"] == "2"
    assert r.json()["detail"] == BUSY_MESSAGE
    assert "unavailable" not in r.text
    # Nothing half-written, and the next call (pool free again) succeeds.
    assert tiny.sql("SELECT count(*) AS n FROM pipeline")[0]["n"] == 0
    with httpx.Client(base_url=tiny.url, timeout=10) as http:
        assert create_pipeline(http, "refused").status_code == 201


def test_the_ingestion_routes_answer_busy_too(tiny: LiveServer) -> None:
    # start/end run on the driver connection (raw_autocommit), a path of their own.
    with httpx.Client(base_url=tiny.url, timeout=10) as http:
        pipeline_id = create_pipeline(http, "raw").json()["id"]
        held = hold_pool(tiny, 3)
        r = http.post("/start_pipeline_execution", json={"pipeline_id": pipeline_id})
    held.result(10)
    assert r.status_code == 503, r.text
    assert r.json()["detail"] == BUSY_MESSAGE and r.headers["Retry-After"] == "2"


def test_requests_queue_for_a_connection_rather_than_fail(single: LiveServer) -> None:
    # Held longer than the old 5 s pool timeout: every request waits its turn and succeeds.
    held = hold_pool(single, 6)
    names = [f"queued_{i}" for i in range(20)]

    def one(name: str) -> int:
        with httpx.Client(base_url=single.url, timeout=60) as http:  # its own connection
            return create_pipeline(http, name).status_code

    with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
        statuses = list(pool.map(one, names))
    held.result(10)
    assert statuses == [201] * len(names)
    assert single.sql("SELECT count(*) AS n FROM pipeline")[0]["n"] == len(names)


def test_health_says_busy_and_stays_ready_while_the_pool_is_saturated(
    postgres: EmbeddedPostgres,
) -> None:
    for live in serve(postgres, db_pool_size=1, db_connect_timeout_seconds=0.5):
        held = hold_pool(live, 3)
        with httpx.Client(base_url=live.url, timeout=10) as http:
            r = http.get("/health")
        held.result(10)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "busy"
        assert r.json()["database"]["status"] == "busy"


def test_too_many_connections_is_busy_not_an_outage(postgres: EmbeddedPostgres) -> None:
    # PostgreSQL itself refusing a session (SQLSTATE 53300), raised for real: a role whose
    # connection limit is reached.
    async def refused() -> Exception:
        admin = await asyncpg.connect(postgres.url)
        try:
            await admin.execute("DROP ROLE IF EXISTS busy_probe")
            await admin.execute("CREATE ROLE busy_probe LOGIN CONNECTION LIMIT 0")
            try:
                await asyncpg.connect(postgres.url.replace("postgres@", "busy_probe@"))
            except asyncpg.PostgresError as error:
                caught: Exception = error
                return caught
            raise AssertionError("the connection limit was not enforced")
        finally:
            await admin.execute("DROP ROLE IF EXISTS busy_probe")
            await admin.close()

    error = asyncio.run(refused())
    assert getattr(error, "sqlstate", None) == "53300"
    assert is_saturated(error) and not is_outage(error)
    answer = unavailable(error)
    assert isinstance(answer, Busy) and answer.detail == BUSY_MESSAGE
