"""Bearer tokens against a real server with auth on: 401/403, scopes, revocation, CLI."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from tests.conftest import LiveServer, start_live_server
from tests.conftest import test_settings as settings_for
from watcher import auth
from watcher.cli import local as cli
from watcher.db.embedded import EmbeddedPostgres


@pytest.fixture(scope="module")
def secured(postgres: EmbeddedPostgres) -> Iterator[LiveServer]:
    server = start_live_server(postgres.url, settings_for(auth_enabled=True))
    yield server
    server.stop()


@pytest.fixture
def api(secured: LiveServer, live: LiveServer) -> Iterator[httpx.Client]:
    # `live` is requested so the shared clean-up truncates every table after the test.
    with httpx.Client(base_url=secured.url, timeout=30) as http:
        yield http


def make_token(server: LiveServer, *scopes: str, name: str = "t") -> tuple[int, str]:
    return server.in_transaction(
        lambda conn: auth.create_token(conn, name, scopes, server.clock.now())
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


PIPELINE = {"name": "auth_p", "pipeline_type_name": "extraction"}


def test_heartbeat_and_health_stay_open(api: httpx.Client) -> None:
    assert api.get("/").status_code == 200
    assert api.get("/health").status_code == 200


def test_missing_or_unknown_token_is_401_with_challenge(api: httpx.Client) -> None:
    for headers in (
        {},
        bearer("wt_nope"),
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer"},
    ):
        r = api.get("/pipeline", headers=headers)
        assert r.status_code == 401, (headers, r.text)
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        assert r.json()["detail"]


def test_ingest_token_reports_runs_but_cannot_read_or_administer(
    api: httpx.Client, secured: LiveServer
) -> None:
    _, token = make_token(secured, "ingest")
    r = api.post("/pipeline", json=PIPELINE, headers=bearer(token))
    assert r.status_code == 201, r.text
    start = api.post(
        "/start_pipeline_execution", json={"pipeline_id": r.json()["id"]}, headers=bearer(token)
    )
    assert start.status_code == 201, start.text
    assert api.get("/pipeline", headers=bearer(token)).status_code == 403
    patch = api.patch("/pipeline", json={"name": "auth_p", "active": False}, headers=bearer(token))
    assert patch.status_code == 403
    assert "admin" in patch.json()["detail"]


def test_read_token_reads_but_cannot_write(api: httpx.Client, secured: LiveServer) -> None:
    _, token = make_token(secured, "read")
    assert api.get("/pipeline", headers=bearer(token)).status_code == 200
    assert api.post("/pipeline", json=PIPELINE, headers=bearer(token)).status_code == 403


def test_admin_token_may_do_everything(api: httpx.Client, secured: LiveServer) -> None:
    _, token = make_token(secured, "admin")
    h = bearer(token)
    assert api.post("/pipeline", json=PIPELINE, headers=h).status_code == 201
    assert api.get("/pipeline", headers=h).status_code == 200
    r = api.patch("/pipeline", json={"name": "auth_p", "active": False}, headers=h)
    assert r.status_code == 200, r.text


def test_scheme_name_is_case_insensitive(api: httpx.Client, secured: LiveServer) -> None:
    _, token = make_token(secured, "read")
    assert api.get("/pipeline", headers={"Authorization": f"bearer {token}"}).status_code == 200


def test_only_the_hash_is_stored(api: httpx.Client, secured: LiveServer) -> None:
    token_id, token = make_token(secured, "read", name="hashed")
    assert token.startswith("wt_") and len(token) > 40
    rows = secured.sql("SELECT * FROM api_token WHERE id = :i", i=token_id)
    assert rows[0]["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert token not in repr(rows)


def test_revoked_token_is_refused_within_the_cache_time(
    api: httpx.Client, secured: LiveServer
) -> None:
    token_id, token = make_token(secured, "read")
    assert api.get("/pipeline", headers=bearer(token)).status_code == 200  # now cached
    assert secured.in_transaction(
        lambda conn: auth.revoke_token(conn, token_id, secured.clock.now())
    )
    revoked_at = time.monotonic()
    status = 200
    while status == 200 and time.monotonic() - revoked_at < auth.CACHE_SECONDS + 2:
        status = api.get("/pipeline", headers=bearer(token)).status_code
        time.sleep(0.2)
    assert status == 401
    assert time.monotonic() - revoked_at <= auth.CACHE_SECONDS + 1


def test_last_used_is_recorded_but_not_on_every_request(
    api: httpx.Client, secured: LiveServer
) -> None:
    token_id, token = make_token(secured, "read")

    def last_used() -> object:
        return secured.sql("SELECT last_used_at FROM api_token WHERE id = :i", i=token_id)[0][
            "last_used_at"
        ]

    assert last_used() is None
    assert api.get("/pipeline", headers=bearer(token)).status_code == 200
    first = last_used()
    assert first is not None
    secured.clock.advance(timedelta(seconds=30))
    for _ in range(5):
        assert api.get("/pipeline", headers=bearer(token)).status_code == 200
    assert last_used() == first
    secured.clock.reset()


class Ticks:
    """A monotonic clock the test moves (the token cache's, instead of sleeping)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_scrape_with_a_cached_token_runs_no_database_statement(
    api: httpx.Client, secured: LiveServer
) -> None:
    ticks = Ticks()
    installed = secured.services.authorizer
    secured.services.authorizer = auth.TokenAuthorizer(secured.services, monotonic=ticks)
    _, token = make_token(secured, "read", name="prometheus")
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(str(args[2]))

    engine = secured.services.engine.sync_engine
    try:
        assert api.get("/metrics", headers=bearer(token)).status_code == 200  # looked up
        event.listen(engine, "before_cursor_execute", record)
        for _ in range(3):
            ticks.now += auth.CACHE_SECONDS / 4
            assert api.get("/metrics", headers=bearer(token)).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", record)
        secured.services.authorizer = installed
    assert statements == []


def test_scopes() -> None:
    assert auth.allows(["admin"], "ingest") and auth.allows(["admin"], "read")
    assert not auth.allows(["ingest"], "read")
    assert not auth.allows(["read"], "admin")
    assert auth.allows([], "public")


def test_tokens_cli_creates_lists_and_revokes(
    postgres: EmbeddedPostgres,
    live: LiveServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("WATCHER_DATABASE_URL", postgres.url)
    assert cli.main(["tokens", "create", "ci", "--scope", "ingest", "--scope", "read"]) == 0
    out = capsys.readouterr().out
    token = next(w for w in out.split() if w.startswith("wt_"))
    row = live.sql(
        "SELECT id, scopes FROM api_token WHERE token_hash = :h", h=auth.hash_token(token)
    )
    assert row and row[0]["scopes"] == ["ingest", "read"]
    assert cli.main(["tokens", "list"]) == 0
    listing = capsys.readouterr().out
    assert "ci" in listing and token not in listing
    assert cli.main(["tokens", "revoke", str(row[0]["id"])]) == 0
    assert live.sql("SELECT revoked_at FROM api_token")[0]["revoked_at"] is not None
    assert cli.main(["tokens", "revoke", str(row[0]["id"])]) == 1


def test_first_start_explains_how_to_create_a_token(
    postgres: EmbeddedPostgres, live: LiveServer, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(auth_enabled=True)
    cli._hint_first_token(settings, postgres.url)
    assert "watcher tokens create admin --scope admin" in capsys.readouterr().err
    make_token(live, "admin")
    cli._hint_first_token(settings, postgres.url)
    assert "tokens create" not in capsys.readouterr().err


def test_serve_refuses_a_remote_address_without_auth(tmp_path: object) -> None:
    env = {
        **os.environ,
        "WATCHER_AUTH_ENABLED": "false",
        "WATCHER_ALLOW_INSECURE_REMOTE": "false",
        "WATCHER_DATA_DIR": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-m", "watcher", "serve", "--host", "0.0.0.0", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "WATCHER_ALLOW_INSECURE_REMOTE" in done.stderr


def test_insecure_remote_needs_an_explicit_setting() -> None:
    assert auth.insecure_bind_refusal(settings_for(host="10.0.0.5")) is not None
    assert auth.insecure_bind_refusal(settings_for(host="127.0.0.1")) is None
    assert auth.insecure_bind_refusal(settings_for(host="::1")) is None
    assert auth.insecure_bind_refusal(settings_for(host="localhost")) is None
    assert auth.insecure_bind_refusal(settings_for(host="0.0.0.0", auth_enabled=True)) is None
    remote = settings_for(host="0.0.0.0", allow_insecure_remote=True)
    assert auth.insecure_bind_refusal(remote) is None
