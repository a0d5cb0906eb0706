"""The documented curl examples, run with bash against a live Watcher: the `## Quick start with
curl` block of docs/api.md, and the README's `## A first run with curl` (authentication on)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import LiveServer, start_live_server
from tests.conftest import test_settings as settings_for
from watcher.db.embedded import EmbeddedPostgres

needs_curl_and_jq = pytest.mark.skipif(
    shutil.which("curl") is None or shutil.which("jq") is None, reason="needs curl and jq"
)


def sh_block(page: str, heading: str) -> str:
    section = page.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1
    return str(blocks[0])


def curl_example(repo_root: Path) -> str:
    return sh_block((repo_root / "docs" / "api.md").read_text(), "Quick start with curl")


def readme_first_run(repo_root: Path) -> str:
    return sh_block((repo_root / "README.md").read_text(), "A first run with curl")


@needs_curl_and_jq
def test_the_curl_workflow_advances_the_watermark_and_asks_for_lineage_once(
    live: LiveServer, repo_root: Path
) -> None:
    script = curl_example(repo_root)
    env = {k: v for k, v in os.environ.items() if k != "WATCHER_TOKEN"}
    env["WATCHER_URL"] = live.url

    def run() -> list[str]:
        done = subprocess.run(
            ["bash", "-c", script], capture_output=True, text=True, env=env, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()

    first = run()
    assert first[0] == "loading orders after the beginning"
    assert first[1] == "1 lineage relationships recorded"
    assert first[-1] == '{"watermark":"2024-06-02","load_lineage":false,"last_target_insert":true}'
    second = run()
    assert second[0] == "loading orders after 2024-06-02"
    assert len(second) == 2  # no lineage step
    executions = live.sql("SELECT inserts, completed_successfully FROM pipeline_execution")
    assert executions == [{"inserts": 120, "completed_successfully": True}] * 2
    assert len(live.sql("SELECT * FROM address_lineage")) == 1

    live.sql("UPDATE pipeline SET active = false")
    assert run() == ["loading orders after 2024-06-02", "paused"]
    assert len(live.sql("SELECT * FROM pipeline_execution")) == 2


@pytest.fixture(scope="module")
def secured(postgres: EmbeddedPostgres) -> Iterator[LiveServer]:
    """A Watcher with authentication on, as `make run` starts it, on the shared database."""
    server = start_live_server(postgres.url, settings_for(auth_enabled=True))
    yield server
    server.stop()


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_the_readme_first_run_creates_a_token_and_reports_a_run(
    secured: LiveServer, live: LiveServer, postgres: EmbeddedPostgres, repo_root: Path
) -> None:
    # `live` is requested so the shared clean-up runs (and the ids start at 1, as documented).
    watcher = Path(sys.executable).parent / "watcher"
    script = (
        readme_first_run(repo_root)
        .replace("http://127.0.0.1:8000", secured.url)
        .replace(".venv/bin/watcher", str(watcher))
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHER_")}
    env["WATCHER_DATABASE_URL"] = postgres.url  # `watcher tokens` on the server's database
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        env=env,
        cwd=repo_root,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    created, started, ended, execution = done.stdout.splitlines()
    assert json.loads(created) == {"id": 1, "active": True, "load_lineage": True, "watermark": None}
    assert json.loads(started) == {"id": 1}
    assert ended == ""  # 204
    body = json.loads(execution)
    assert (body["id"], body["completed_successfully"], body["inserts"]) == (1, True, 120)
    assert body["duration_seconds"] is not None
    rows = live.sql("SELECT name FROM api_token")
    assert [r["name"] for r in rows] == ["me"]
