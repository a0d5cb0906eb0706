"""Shared fixtures: a real PostgreSQL (embedded, one per test session), a real Watcher served
by uvicorn on a free port in a background thread, a movable clock, and a clean database for
every test.

Tests talk HTTP to `live.url` (fixture `client`) and reach the database through the server's
own engine and event loop with `live.run(coro_fn)` / `live.sql(...)`.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn
import watcher_client._spool
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from watcher.app import create_app
from watcher.clock import OffsetClock
from watcher.config import Settings
from watcher.db import migrate
from watcher.db.embedded import EmbeddedPostgres, start_embedded
from watcher.db.schema import metadata
from watcher.services import Services

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    server = start_embedded(tmp_path_factory.mktemp("pg") / "data")
    migrate.upgrade(server.url)
    yield server
    server.stop()


def test_settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "scheduler_enabled": False,
        "auth_enabled": False,
        "log_level": "warning",
        "log_json": True,
    }
    return Settings(**(base | overrides))


test_settings.__test__ = False  # type: ignore[attr-defined]  # a factory, not a test


@dataclass
class LiveServer:
    url: str
    services: Services
    clock: OffsetClock
    loop: asyncio.AbstractEventLoop
    server: uvicorn.Server
    thread: threading.Thread

    def run(self, fn: Callable[[], Awaitable[T]], timeout: float = 60) -> T:
        """Run a coroutine on the server's event loop (where its engine lives)."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(fn(), self.loop)  # type: ignore[arg-type]
        return future.result(timeout)

    def in_transaction(self, fn: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        async def go() -> T:
            async with self.services.engine.begin() as conn:
                return await fn(conn)

        return self.run(go)

    def sql(self, statement: str, **params: Any) -> list[dict[str, Any]]:
        async def go(conn: AsyncConnection) -> list[dict[str, Any]]:
            result = await conn.execute(text(statement), params)
            return [dict(r._mapping) for r in result] if result.returns_rows else []

        return self.in_transaction(go)

    def stop(self) -> None:
        if self in RUNNING:
            RUNNING.remove(self)
        self.server.should_exit = True
        self.thread.join(30)


RUNNING: list[LiveServer] = []  # every live server started and not stopped yet


def start_live_server(database_url: str, settings: Settings) -> LiveServer:
    clock = OffsetClock()
    app = create_app(settings, database_url=database_url, clock=clock)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    server = uvicorn.Server(config)
    loop_box: dict[str, asyncio.AbstractEventLoop] = {}

    def serve() -> None:
        loop = asyncio.new_event_loop()
        loop_box["loop"] = loop
        loop.run_until_complete(server.serve())
        loop.close()

    thread = threading.Thread(target=serve, name=f"watcher-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("live server did not start")
        time.sleep(0.02)
    live = LiveServer(
        url=f"http://127.0.0.1:{port}",
        services=app.state.services,
        clock=clock,
        loop=loop_box["loop"],
        server=server,
        thread=thread,
    )
    RUNNING.append(live)
    return live


@pytest.fixture(scope="session")
def live(postgres: EmbeddedPostgres) -> Iterator[LiveServer]:
    server = start_live_server(postgres.url, test_settings())
    yield server
    server.stop()


TABLES = ", ".join(t.name for t in metadata.sorted_tables)


@pytest.fixture(autouse=True)
def _clean(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "live" in request.fixturenames:
        live: LiveServer = request.getfixturevalue("live")
        live.clock.reset()
        # A server's background detector may still be merging the last end into its day
        # summary (pipeline_execution, then anomaly_baseline_day): TRUNCATE locks them in the
        # other order, so let every live server's detector finish first or the two deadlock.
        for server in RUNNING:
            if server.thread.is_alive():
                server.run(server.services.detector.drain)
        live.sql(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")


@pytest.fixture(autouse=True)
def _own_spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Each test's clients spool into its own directory: a run one test could not report must
    # never be replayed into the shared live server during another test.
    state = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    monkeypatch.delenv("WATCHER_SPOOL_DIR", raising=False)
    monkeypatch.setattr(watcher_client._spool, "fallback_state_home", lambda: state)


@pytest.fixture
def client(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=30) as http:
        yield http


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
