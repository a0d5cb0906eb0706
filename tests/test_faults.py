"""Database faults, injected for real: PostgreSQL is stopped and started under a live server.

These tests use their own embedded PostgreSQL (never the session one other tests share) and
check that requests fail fast with 503 + Retry-After, that the service recovers by itself,
and that nothing acknowledged with a 2xx is lost while the database comes and goes.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from pgserver._commands import pg_ctl  # type: ignore[attr-defined]  # built at import time
from watcher_client import WatcherClient
from watcher_client._http import RetryPolicy

from tests.conftest import LiveServer, start_live_server
from tests.conftest import test_settings as settings_for
from watcher import auth
from watcher.db import migrate
from watcher.db.embedded import EmbeddedPostgres, start_embedded


def socket_dir(db: EmbeddedPostgres) -> str:
    return db.url.split("host=", 1)[1]


def stop_postgres(db: EmbeddedPostgres) -> None:
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=db.data_dir, user=db.server.system_user)


def start_postgres(db: EmbeddedPostgres) -> None:
    args = ["-w", "-o", '-h ""', "-o", f"-k {socket_dir(db)}", "-l", str(db.data_dir / "log")]
    pg_ctl([*args, "start"], pgdata=db.data_dir, user=db.server.system_user, timeout=30)


@dataclass
class Fragile:
    db: EmbeddedPostgres
    live: LiveServer


@pytest.fixture(scope="module")
def fragile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fragile]:
    db = start_embedded(tmp_path_factory.mktemp("faultpg") / "data")
    migrate.upgrade(db.url)
    settings = settings_for(
        retry_after_seconds=1, db_pool_timeout_seconds=2, db_connect_timeout_seconds=2
    )
    live = start_live_server(db.url, settings)
    try:
        yield Fragile(db, live)
    finally:
        live.stop()
        db.stop()
        # pgserver only stops the postmaster it started; the tests restarted it themselves.
        if (db.data_dir / "postmaster.pid").exists():
            stop_postgres(db)


def wait_healthy(http: httpx.Client, seconds: float = 30) -> float:
    """Seconds until /health answers 200 (bounded)."""
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        if http.get("/health").status_code == 200:
            return time.monotonic() - began
        time.sleep(0.1)
    raise AssertionError("service did not recover")


def test_outage_is_503_fast_and_recovers_without_restart(fragile: Fragile) -> None:
    with httpx.Client(base_url=fragile.live.url, timeout=20) as http:
        assert http.post("/pipeline", json={"name": "o", "pipeline_type_name": "t"}).is_success
        stop_postgres(fragile.db)
        try:
            for method, path, body in [
                ("GET", "/pipeline", None),
                ("POST", "/pipeline", {"name": "o2", "pipeline_type_name": "t"}),
                ("POST", "/start_pipeline_execution", {"pipeline_name": "o"}),
            ]:
                began = time.monotonic()
                r = http.request(method, path, json=body)
                assert time.monotonic() - began < 5, (path, "did not fail fast")
                assert r.status_code == 503, (path, r.text)
                assert r.headers["Retry-After"] == "1"
                assert r.json()["detail"] == "database unavailable, retry later"
            health = http.get("/health")
            assert health.status_code == 503
            assert health.json()["database"]["status"] == "unavailable"
        finally:
            start_postgres(fragile.db)
        wait_healthy(http)
        r = http.post("/pipeline", json={"name": "o2", "pipeline_type_name": "t"})
        assert r.status_code == 201, r.text


def postmaster_pid(db: EmbeddedPostgres) -> int:
    return int((db.data_dir / "postmaster.pid").read_text().split()[0])


def test_unresponsive_database_is_503_within_the_connect_timeout(fragile: Fragile) -> None:
    # A frozen postmaster accepts on its socket but never answers: the hang a dead network
    # path produces. New connections must give up after db_connect_timeout_seconds.
    pid = postmaster_pid(fragile.db)
    fragile.live.run(fragile.live.services.engine.dispose)  # no pooled connections to reuse
    os.kill(pid, signal.SIGSTOP)
    try:
        with httpx.Client(base_url=fragile.live.url, timeout=30) as http:
            began = time.monotonic()
            r = http.get("/pipeline")
            elapsed = time.monotonic() - began
            assert r.status_code == 503, r.text
            assert "Retry-After" in r.headers
            assert elapsed < 2 + 3, elapsed
            assert http.get("/health").status_code == 503
    finally:
        os.kill(pid, signal.SIGCONT)
    with httpx.Client(base_url=fragile.live.url, timeout=30) as http:
        wait_healthy(http)
        assert http.get("/pipeline").status_code == 200


class Ticks:
    """A monotonic clock the test moves (the token cache's, instead of sleeping)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_known_token_still_scrapes_metrics_while_postgres_is_down(fragile: Fragile) -> None:
    settings = settings_for(
        auth_enabled=True,
        retry_after_seconds=1,
        db_pool_timeout_seconds=2,
        db_connect_timeout_seconds=2,
    )
    secured = start_live_server(fragile.db.url, settings)
    ticks = Ticks()
    secured.services.authorizer = auth.TokenAuthorizer(secured.services, monotonic=ticks)

    def new_token(name: str) -> tuple[int, str]:
        now = secured.clock.now()
        return secured.in_transaction(lambda c: auth.create_token(c, name, ["read"], now))

    token_id, token = new_token("prometheus")
    _, unseen = new_token("unseen")
    try:
        with httpx.Client(
            base_url=secured.url, timeout=20, headers={"Authorization": f"Bearer {token}"}
        ) as http:
            assert http.get("/metrics").status_code == 200  # the grant is now known
            stop_postgres(fragile.db)
            try:
                for _ in range(3):  # each past the cache: the lookup fails, the grant serves
                    ticks.now += auth.CACHE_SECONDS + 1
                    began = time.monotonic()
                    r = http.get("/metrics")
                    assert r.status_code == 200, r.text
                    assert time.monotonic() - began < 5
                # The grant lets the token in; routes that need the database still 503.
                assert http.get("/pipeline").status_code == 503
                # A token the database never vouched for is not let in blind.
                r = http.get("/metrics", headers={"Authorization": f"Bearer {unseen}"})
                assert r.status_code == 503
                ticks.now += auth.STALE_SECONDS  # past the bound: 503 again
                assert http.get("/metrics").status_code == 503
            finally:
                start_postgres(fragile.db)
            wait_healthy(http)
            assert http.get("/metrics").status_code == 200
            # Once the database answers again, a revocation holds.
            revoked_at = secured.clock.now()
            assert secured.in_transaction(lambda c: auth.revoke_token(c, token_id, revoked_at))
            ticks.now += auth.CACHE_SECONDS
            assert http.get("/metrics").status_code == 401
    finally:
        secured.stop()


class CountingTransport(httpx.HTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.sent = 0
        self.statuses: dict[int, int] = {}
        self.transport_errors = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent += 1
        try:
            response = super().handle_request(request)
        except httpx.TransportError:
            self.transport_errors += 1
            raise
        self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
        return response


@dataclass
class Ledger:
    """What the server acknowledged with a 2xx, keyed by run_id."""

    started: dict[str, int] = field(default_factory=dict)
    ended: dict[str, dict[str, object]] = field(default_factory=dict)
    progress: threading.Condition = field(default_factory=threading.Condition)


RUNS = 160
FAULT_AT = (30, 100)  # inject an outage when this many runs have been acknowledged


def ingest(client: WatcherClient, pipeline_id: int, ledger: Ledger) -> None:
    base = datetime(2024, 1, 1, tzinfo=UTC)
    for i in range(RUNS):
        run_id = f"run-{i}"
        started = base + timedelta(minutes=i)
        created = client.start_execution(pipeline_id, run_id=run_id, start_date=started)
        ledger.started[run_id] = created["id"]
        values: dict[str, object] = {
            "completed_successfully": i % 7 != 0,
            "end_date": started + timedelta(seconds=30 + i),
            "inserts": i,
            "updates": i * 2,
            "total_rows": i * 10,
        }
        client.end_execution(created["id"], **values)  # type: ignore[arg-type]
        with ledger.progress:
            ledger.ended[run_id] = values
            ledger.progress.notify_all()


def test_nothing_acknowledged_is_lost_when_postgres_restarts(fragile: Fragile) -> None:
    transport = CountingTransport()
    policy = RetryPolicy(retries=60, backoff=0.1, max_backoff=2.0)
    ledger = Ledger()
    errors: list[BaseException] = []
    with WatcherClient(fragile.live.url, retry=policy, transport=transport, timeout=20) as client:
        pipeline_id = client.create_pipeline("faulty", pipeline_type_name="t")["id"]

        def worker() -> None:
            try:
                ingest(client, pipeline_id, ledger)
            except BaseException as error:  # reported below
                errors.append(error)
            finally:
                with ledger.progress:
                    ledger.progress.notify_all()

        thread = threading.Thread(target=worker, name="ingest")
        thread.start()
        faults = 0
        for mark in FAULT_AT:
            with ledger.progress:
                ledger.progress.wait_for(
                    functools.partial(_reached, ledger, thread, mark), timeout=60
                )
            assert thread.is_alive(), errors
            stop_postgres(fragile.db)
            faults += 1
            time.sleep(1.5)  # the ingestion loop keeps sending while the database is down
            start_postgres(fragile.db)
        thread.join(180)
        assert not thread.is_alive() and not errors, errors

    rows = {
        r["run_id"]: r
        for r in fragile.live.sql(
            "SELECT id, run_id, end_date, completed_successfully, inserts, updates, total_rows "
            "FROM pipeline_execution WHERE pipeline_id = :p",
            p=pipeline_id,
        )
    }
    total = fragile.live.sql(
        "SELECT count(*) AS n FROM pipeline_execution WHERE pipeline_id = :p", p=pipeline_id
    )[0]["n"]
    lost = [run for run in ledger.started if run not in rows]
    lost += [
        run
        for run, values in ledger.ended.items()
        if run not in rows or any(rows[run][k] != v for k, v in values.items())
    ]
    wrong_ids = [run for run, id_ in ledger.started.items() if rows[run]["id"] != id_]
    print(
        f"\nfault injection: requests sent {transport.sent} (responses {transport.statuses}, "
        f"transport errors {transport.transport_errors}), faults injected {faults}, "
        f"acknowledged starts {len(ledger.started)}, acknowledged ends {len(ledger.ended)}, "
        f"acknowledged writes checked {len(ledger.started) + len(ledger.ended)}, "
        f"lost {len(lost)}, rows {total}"
    )
    assert faults == len(FAULT_AT)
    assert transport.statuses.get(503, 0) + transport.transport_errors > 0, "no fault was seen"
    assert 500 not in transport.statuses, "an outage must answer 503, never 500"
    assert len(ledger.ended) == RUNS
    assert lost == [] and wrong_ids == []
    assert total == RUNS, "a retry created a duplicate execution"


# -- transient failures: the database answers, but cancels the statement --------------------


@pytest.fixture
def impatient(postgres: EmbeddedPostgres, live: LiveServer) -> Iterator[LiveServer]:
    """A server on the shared database with a 300 ms statement timeout (`live` is requested so
    the tables are truncated afterwards)."""
    server = start_live_server(postgres.url, settings_for(db_statement_timeout_ms=300))
    try:
        yield server
    finally:
        server.stop()


class RowLock:
    """`SELECT … FOR UPDATE` held open on a connection of its own, as a long transaction
    elsewhere (a migration, a manual fix) would hold it."""

    def __init__(self, url: str, table: str, row_id: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.conn = self.loop.run_until_complete(asyncpg.connect(url))
        self.loop.run_until_complete(self.conn.execute("BEGIN"))
        query = f"SELECT 1 FROM {table} WHERE id = $1 FOR UPDATE"
        self.loop.run_until_complete(self.conn.execute(query, row_id))

    def release(self) -> None:
        self.loop.run_until_complete(self.conn.execute("ROLLBACK"))
        self.loop.run_until_complete(self.conn.close())
        self.loop.close()


def test_a_statement_timeout_behind_a_row_lock_is_503_with_retry_after(
    impatient: LiveServer, postgres: EmbeddedPostgres
) -> None:
    with httpx.Client(base_url=impatient.url, timeout=20) as http:
        pipeline = http.post("/pipeline", json={"name": "locked", "pipeline_type_name": "t"})
        pipeline_id = pipeline.json()["id"]
        execution = http.post("/start_pipeline_execution", json={"pipeline_id": pipeline_id})
        end = {"id": execution.json()["id"], "completed_successfully": True, "inserts": 5}
        lock = RowLock(postgres.url, "pipeline", pipeline_id)
        try:
            patched = http.patch("/pipeline", json={"id": pipeline_id, "active": False})
            ended = http.post("/end_pipeline_execution", json=end)  # updates the pipeline row
        finally:
            lock.release()
        for r in (patched, ended):
            assert r.status_code == 503, r.text
            assert r.headers["Retry-After"] == str(impatient.services.settings.retry_after_seconds)
            assert "retry later" in r.json()["detail"] and "SELECT" not in r.text
        assert impatient.sql("SELECT end_date FROM pipeline_execution")[0]["end_date"] is None
        # Nothing was half-written, and the retries the 503 asks for succeed.
        assert http.patch("/pipeline", json={"id": pipeline_id, "active": False}).is_success
        assert http.post("/end_pipeline_execution", json=end).status_code == 204
        row = impatient.sql("SELECT inserts FROM pipeline_execution")[0]
        assert row["inserts"] == 5


def _reached(ledger: Any, thread: threading.Thread, mark: int) -> bool:
    return len(ledger.ended) >= mark or not thread.is_alive()
