"""The benchmark runs end to end at a tiny scale, so it cannot rot. It asserts shapes, never
timings: figures belong to `make bench`, not to a unit test."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from benchmarks import run
from watcher.db.embedded import EmbeddedPostgres

SCRATCH = "bench_smoke"


async def _recreate(url: str, name: str, create: bool) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        if create:
            await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()


@pytest.fixture
def scratch_url(postgres: EmbeddedPostgres) -> Iterator[str]:
    """A database of its own on the session's server: the benchmark truncates tables."""
    asyncio.run(_recreate(postgres.url, SCRATCH, create=True))
    yield postgres.url.replace("/watcher?", f"/{SCRATCH}?", 1)
    asyncio.run(_recreate(postgres.url, SCRATCH, create=False))


def test_the_benchmark_runs_every_phase_at_a_tiny_scale(scratch_url: str, tmp_path: Path) -> None:
    results = run.main(
        ["--tiny", "--database-url", scratch_url, "--results", str(tmp_path), "--summary", ""]
    )

    lifecycle = results["lifecycle"]["2"]
    assert lifecycle["errors"] == 0 and lifecycle["limit"]["errors"] == 0
    assert lifecycle["runs"][0]["lifecycles"] > 0 and lifecycle["limit"]["lifecycles_per_s"] > 0
    assert set(lifecycle["routes"]) == {
        "/end_pipeline_execution",
        "/pipeline",
        "/start_pipeline_execution",
    }
    assert results["growth"]["full"]["stored_executions"] >= 2_000
    assert {"scrape", "checks", "targets", "machine"} <= set(results)
    assert json.loads((tmp_path / "latest.json").read_text())["command"]
