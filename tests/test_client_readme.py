"""The README's `### Python client` examples run, in order, against a live Watcher."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LiveServer


def client_examples(readme: str) -> list[str]:
    section = readme.split("### Python client\n", 1)[1]
    section = re.split(r"\n### |<!-- /section:integrations -->", section)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_adoption_takes_three_lines(repo_root: Path) -> None:
    first = client_examples((repo_root / "README.md").read_text())[0]
    assert len([line for line in first.splitlines() if line.strip()]) == 3


def test_the_readme_examples_run_against_a_live_watcher(
    repo_root: Path, live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHER_URL", live.url)
    examples = client_examples((repo_root / "README.md").read_text())
    assert len(examples) >= 6
    namespace: dict[str, Any] = {"__name__": "readme"}
    try:
        for number, example in enumerate(examples, 1):
            exec(compile(example, f"README.md python example {number}", "exec"), namespace)
    finally:
        namespace["watcher"].close()
    runs = live.sql(
        "SELECT p.name, count(*) AS runs, bool_and(e.completed_successfully) AS ok "
        "FROM pipeline_execution e JOIN pipeline p ON p.id = e.pipeline_id "
        "GROUP BY p.name ORDER BY p.name"
    )
    assert {r["name"]: r["runs"] for r in runs} == {
        "daily_orders": 1,
        "orders_to_dwh": 1,
        "customers_to_dwh": 1,
        "nightly": 1,
        "nightly_orders": 1,
        "nightly_customers": 1,
        "events_to_lake": 1,
    }
    assert all(r["ok"] for r in runs)
    watermark = live.sql("SELECT watermark FROM pipeline WHERE name = 'orders_to_dwh'")
    assert watermark == [{"watermark": "2024-06-02"}]
