"""Secrets: the database password and the Slack webhook never reach logs or error bodies;
both can be read from `*_FILE` paths."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, start_live_server
from tests.conftest import test_settings as settings_for
from watcher.config import load_settings

PASSWORD = "Pw-s3cret-7f1c9e"
WEBHOOK = "https://hooks.slack.com/services/T000/B000/wh-s3cret-91ab"


def unreachable_url() -> str:
    # A closed loopback port: every connection attempt is refused at once.
    return f"postgresql://watcher:{PASSWORD}@127.0.0.1:{free_port()}/watcher"


def test_unreachable_database_leaks_no_password_in_bodies_or_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = settings_for(
        scheduler_enabled=True,
        leader_check_interval_seconds=0.2,
        slack_webhook_url=WEBHOOK,
        log_level="debug",
    )
    caplog.set_level(logging.DEBUG)
    server = start_live_server(unreachable_url(), settings)
    bodies: list[str] = []
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for method, path, body in [
                ("GET", "/health", None),
                ("GET", "/pipeline", None),
                ("POST", "/pipeline", {"name": "s", "pipeline_type_name": "t"}),
                ("POST", "/start_pipeline_execution", {"pipeline_name": "s"}),
            ]:
                r = http.request(method, path, json=body)
                assert r.status_code == 503, r.text
                bodies.append(f"{r.headers}\n{r.text}")
        time.sleep(0.5)  # a few failed leadership checks get logged
    finally:
        server.stop()
    logged = "\n".join(f"{r.getMessage()} {r.__dict__} {r.exc_text or ''}" for r in caplog.records)
    assert "database" in logged or "leadership" in logged  # the failures were logged
    for secret in (PASSWORD, "wh-s3cret"):
        assert not any(secret in b for b in bodies)
        assert secret not in logged
    assert PASSWORD not in repr(settings) and "wh-s3cret" not in repr(settings)


def test_serve_with_an_unreachable_database_prints_no_password(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "WATCHER_DATABASE_URL": unreachable_url(),
        "WATCHER_SLACK_WEBHOOK_URL": WEBHOOK,
        "WATCHER_PORT": str(free_port()),
        "WATCHER_DB_CONNECT_TIMEOUT_SECONDS": "2",
        "WATCHER_LOG_LEVEL": "debug",
    }
    done = subprocess.run(
        [sys.executable, "-m", "watcher", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "refused" in output.lower() or "connect" in output.lower(), output  # the DB path
    assert PASSWORD not in output
    assert "wh-s3cret" not in output


def test_secrets_come_from_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db_file = tmp_path / "db"
    db_file.write_text(f"postgresql://watcher:{PASSWORD}@db.internal/watcher\n")
    hook_file = tmp_path / "hook"
    hook_file.write_text(WEBHOOK + "\n")
    monkeypatch.delenv("WATCHER_DATABASE_URL", raising=False)
    monkeypatch.delenv("WATCHER_SLACK_WEBHOOK_URL", raising=False)
    monkeypatch.setenv("WATCHER_DATABASE_URL_FILE", str(db_file))
    monkeypatch.setenv("WATCHER_SLACK_WEBHOOK_URL_FILE", str(hook_file))
    settings = load_settings()
    assert settings.database_url is not None and settings.slack_webhook_url is not None
    assert settings.database_url.get_secret_value() == db_file.read_text().strip()
    assert settings.slack_webhook_url.get_secret_value() == WEBHOOK
    assert PASSWORD not in repr(settings) and "wh-s3cret" not in str(settings)


def test_a_missing_secret_file_fails_loudly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHER_DATABASE_URL_FILE", str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError):
        load_settings()
