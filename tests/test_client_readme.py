"""The documented Python examples run, in order, against a live Watcher: every `python` block
of docs/client.md (one shared namespace per page), and the README's first run."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LiveServer


def python_blocks(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page, flags=re.S)


def client_examples(repo_root: Path) -> list[str]:
    return python_blocks((repo_root / "docs" / "client.md").read_text())


def readme_examples(repo_root: Path) -> list[str]:
    readme = (repo_root / "README.md").read_text()
    section = readme.split("\n## A first run with the Python client\n", 1)[1]
    return python_blocks(section.split("\n## ", 1)[0])


def run_in_order(examples: list[str], source: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "docs"}
    try:
        for number, example in enumerate(examples, 1):
            exec(compile(example, f"{source} python example {number}", "exec"), namespace)
    finally:
        if "watcher" in namespace:
            namespace["watcher"].close()
    return namespace


def runs_per_pipeline(live: LiveServer) -> dict[str, int]:
    runs = live.sql(
        "SELECT p.name, count(*) AS runs, bool_and(e.completed_successfully) AS ok "
        "FROM pipeline_execution e JOIN pipeline p ON p.id = e.pipeline_id "
        "GROUP BY p.name ORDER BY p.name"
    )
    assert all(r["ok"] for r in runs)
    return {r["name"]: r["runs"] for r in runs}


def test_adoption_takes_three_lines(repo_root: Path) -> None:
    readme = readme_examples(repo_root)
    assert len(readme) == 1
    for first in (client_examples(repo_root)[0], readme[0]):
        assert len([line for line in first.splitlines() if line.strip()]) == 3
        assert first.startswith("from watcher_client import WatcherClient\n")


def test_the_client_page_examples_run_against_a_live_watcher(
    repo_root: Path, live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHER_URL", live.url)
    monkeypatch.delenv("WATCHER_TOKEN", raising=False)
    examples = client_examples(repo_root)
    assert len(examples) >= 6
    namespace = run_in_order(examples, "docs/client.md")
    assert "watcher" in namespace
    assert runs_per_pipeline(live) == {
        "daily_orders": 1,
        "orders_to_dwh": 1,
        "customers_to_dwh": 1,
        "nightly": 1,
        "nightly_orders": 1,
        "nightly_customers": 1,
        "events_to_lake": 1,
        "late_orders": 1,  # spooled while "Watcher was down", then flushed
    }
    watermark = live.sql("SELECT watermark FROM pipeline WHERE name = 'orders_to_dwh'")
    assert watermark == [{"watermark": "2024-06-02"}]


def test_the_readme_first_run_in_python_runs_against_a_live_watcher(
    repo_root: Path, live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHER_URL", live.url)
    monkeypatch.delenv("WATCHER_TOKEN", raising=False)
    run_in_order(readme_examples(repo_root), "README.md")
    assert runs_per_pipeline(live) == {"daily_orders": 1}
    rows = live.sql("SELECT inserts FROM pipeline_execution")
    assert rows == [{"inserts": 42}]
