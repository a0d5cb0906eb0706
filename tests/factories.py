"""Row factories over the HTTP API, for short tests."""

from __future__ import annotations

from typing import Any

import httpx


def make_pipeline(client: httpx.Client, name: str = "orders_load", **fields: Any) -> dict[str, Any]:
    body = {"name": name, "pipeline_type_name": "extraction", **fields}
    response = client.post("/pipeline", json=body)
    assert response.status_code in (200, 201), response.text
    return response.json()  # type: ignore[no-any-return]


def start(client: httpx.Client, pipeline_id: int, **fields: Any) -> int:
    response = client.post("/start_pipeline_execution", json={"pipeline_id": pipeline_id, **fields})
    assert response.status_code in (200, 201), response.text
    return int(response.json()["id"])


def end(client: httpx.Client, execution_id: int, ok: bool = True, **fields: Any) -> httpx.Response:
    body = {"id": execution_id, "completed_successfully": ok, **fields}
    return client.post("/end_pipeline_execution", json=body)


def address(name: str, type_name: str = "postgres", group: str = "database") -> dict[str, str]:
    return {"name": name, "address_type_name": type_name, "address_type_group_name": group}
