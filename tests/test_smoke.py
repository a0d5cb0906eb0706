from __future__ import annotations

import httpx


def test_heartbeat(client: httpx.Client) -> None:
    assert client.get("/").json() == {"status": "ok"}


def test_workflow(client: httpx.Client) -> None:
    r = client.post(
        "/pipeline",
        json={"name": "P1", "pipeline_type_name": "extraction", "next_watermark": "2024-01-02"},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["watermark"] is None and body["active"] and body["load_lineage"]
    r = client.post(
        "/address_lineage",
        json={
            "pipeline_id": body["id"],
            "source_addresses": [
                {
                    "name": "db.s.a",
                    "address_type_name": "postgres",
                    "address_type_group_name": "database",
                }
            ],
            "target_addresses": [
                {
                    "address_name": "db.s.b",
                    "address_type_name": "postgres",
                    "address_type_group_name": "database",
                }
            ],
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["lineage_relationships_created"] == 1
    r = client.post("/start_pipeline_execution", json={"pipeline_id": body["id"]})
    assert r.status_code == 201, r.text
    eid = r.json()["id"]
    r = client.post(
        "/end_pipeline_execution",
        json={"id": eid, "completed_successfully": True, "inserts": 5, "total_rows": 10},
    )
    assert r.status_code == 204, r.text
    p = client.get(f"/pipeline/{body['id']}").json()
    assert p["watermark"] == "2024-01-02" and p["load_lineage"] is False
    e = client.get(f"/pipeline_execution/{eid}").json()
    assert e["inserts"] == 5 and e["children"] == []
    r = client.post(
        "/pipeline",
        json={"name": "p1", "pipeline_type_name": "extraction", "next_watermark": "2024-01-03"},
    )
    assert r.status_code == 200 and r.json()["watermark"] == "2024-01-02"
