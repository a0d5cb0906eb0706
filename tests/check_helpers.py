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
