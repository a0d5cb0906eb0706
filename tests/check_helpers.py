"""Row factories for the check tests: pipelines over HTTP, executions with chosen times."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx


def make_pipeline(client: httpx.Client, name: str, type_name: str = "etl", **rules: Any) -> int:
    r = client.post("/pipeline", json={"name": name, "pipeline_type_name": type_name, **rules})
    assert r.status_code in (200, 201), r.text
    return int(r.json()["id"])


def patch_type(client: httpx.Client, type_name: str, **changes: Any) -> None:
    r = client.patch("/pipeline_type", json={"name": type_name, **changes})
    assert r.status_code == 200, r.text


def patch_pipeline(client: httpx.Client, name: str, **changes: Any) -> None:
    r = client.patch("/pipeline", json={"name": name, **changes})
    assert r.status_code == 200, r.text


def start(client: httpx.Client, pipeline_id: int, at: datetime) -> int:
    r = client.post(
        "/start_pipeline_execution",
        json={"pipeline_id": pipeline_id, "start_date": at.isoformat()},
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def end(
    client: httpx.Client, execution_id: int, at: datetime, ok: bool = True, **counts: Any
) -> None:
    r = client.post(
        "/end_pipeline_execution",
        json={
            "id": execution_id,
            "end_date": at.isoformat(),
            "completed_successfully": ok,
            **counts,
        },
    )
    assert r.status_code == 204, r.text


def run(
    client: httpx.Client,
    execution_pipeline: int,
    started: datetime,
    ended: datetime,
    ok: bool = True,
    **counts: Any,
) -> int:
    execution_id = start(client, execution_pipeline, started)
    end(client, execution_id, ended, ok, **counts)
    return execution_id


# More findings than fit a multi-row VALUES under asyncpg's 32,767 parameters at 7–9 columns.
MANY = 5_000


def bulk_pipelines(live: Any, count: int, columns: str, values: str) -> None:
    """`count` pipelines `bulk_N` of type `bulk` in one statement; `values` may use `g`."""
    live.sql("INSERT INTO pipeline_type (name) VALUES ('bulk')")
    live.sql(
        f"INSERT INTO pipeline (name, pipeline_type_id, {columns})"
        f" SELECT 'bulk_' || g, t.id, {values}"
        " FROM pipeline_type t, generate_series(1, :n) g WHERE t.name = 'bulk'",
        n=count,
    )


def between_quarter_hours(clock: Any) -> None:
    """Move `clock` to 7.5 minutes past a quarter hour (it keeps running from there).

    Missed-run expectations change when a cron fires: a test that checks twice across
    :00/:15/:30/:45 (plus a grace of up to a few minutes) would see a new expected run
    between its two checks, depending on the time of day it happens to run.
    """
    from datetime import timedelta

    now = clock.now()
    into = (now.minute % 15) * 60 + now.second + now.microsecond / 1e6
    clock.advance(timedelta(seconds=(450 - into) % 900))
