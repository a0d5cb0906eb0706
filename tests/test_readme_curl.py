"""The README's `### Quick start with curl` block, run with bash against a live Watcher."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import LiveServer


def curl_example(repo_root: Path) -> str:
    readme = (repo_root / "README.md").read_text()
    section = readme.split("### Quick start with curl\n", 1)[1]
    section = re.split(r"\n### |<!-- /section:integrations -->", section)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1
    return str(blocks[0])


@pytest.mark.skipif(
    shutil.which("curl") is None or shutil.which("jq") is None, reason="needs curl and jq"
)
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
