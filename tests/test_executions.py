from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.conftest import LiveServer
from tests.factories import end, make_pipeline, start

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def test_original_complete_workflow(client: httpx.Client) -> None:
    """The original Watcher's documented workflow, step by step."""
    pipeline = make_pipeline(client, next_watermark="2024-01-02")
    assert pipeline["active"] and pipeline["load_lineage"] and pipeline["watermark"] is None
    execution = start(client, pipeline["id"])
    assert (
        end(client, execution, inserts=10, updates=2, soft_deletes=0, total_rows=12).status_code
        == 204
    )
    again = make_pipeline(client, next_watermark="2024-01-03")
    assert again["watermark"] == "2024-01-02" and again["load_lineage"] is False
    stored = client.get(f"/pipeline/{pipeline['id']}").json()
    assert stored["last_target_insert"] is not None and stored["last_target_update"] is not None
    assert stored["last_target_soft_delete"] is None


def test_end_computes_duration_throughput_and_recorded_hour(client: httpx.Client) -> None:
    pipeline = make_pipeline(client)
    execution = start(client, pipeline["id"], start_date=T0.isoformat())
    end(client, execution, end_date=(T0 + timedelta(seconds=40)).isoformat(), total_rows=200)
    row = client.get(f"/pipeline_execution/{execution}").json()
    assert row["duration_seconds"] == 40.0 and row["throughput"] == 5.0
    assert (row["hour_recorded"], row["date_recorded"]) == (10, "2024-05-01")


def test_failed_end_keeps_watermark_and_lineage_flag(client: httpx.Client) -> None:
    pipeline = make_pipeline(client, next_watermark="5")
    end(client, start(client, pipeline["id"]), ok=False, inserts=3)
    stored = client.get(f"/pipeline/{pipeline['id']}").json()
    assert (stored["watermark"], stored["load_lineage"], stored["last_target_insert"]) == (
        None,
        True,
        None,
    )


def test_start_by_name_and_timestamps_without_zone_are_utc(client: httpx.Client) -> None:
    make_pipeline(client)
    response = client.post(
        "/start_pipeline_execution",
        json={"pipeline_name": "Orders_Load", "start_date": "2024-05-01T10:00:00"},
    )
    assert response.status_code == 201
    assert (
        client.get(f"/pipeline_execution/{response.json()['id']}").json()["start_date"]
        == "2024-05-01T10:00:00+00:00"
    )


def test_start_needs_exactly_one_pipeline_key(client: httpx.Client) -> None:
    assert client.post("/start_pipeline_execution", json={}).status_code == 422
    both = client.post("/start_pipeline_execution", json={"pipeline_id": 1, "pipeline_name": "x"})
    assert both.status_code == 422


def test_start_of_unknown_pipeline_or_parent_is_404(client: httpx.Client, live: LiveServer) -> None:
    assert client.post("/start_pipeline_execution", json={"pipeline_id": 12345}).status_code == 404
    assert (
        client.post("/start_pipeline_execution", json={"pipeline_name": "ghost"}).status_code == 404
    )
    pipeline = make_pipeline(client)
    orphan = client.post(
        "/start_pipeline_execution", json={"pipeline_id": pipeline["id"], "parent_id": 999}
    )
    assert orphan.status_code == 404 and orphan.json()["errors"][0]["loc"] == ["body", "parent_id"]
    assert live.sql("SELECT count(*) AS n FROM pipeline_execution")[0]["n"] == 0


def test_run_id_makes_start_idempotent(client: httpx.Client, live: LiveServer) -> None:
    pipeline = make_pipeline(client)
    first = client.post(
        "/start_pipeline_execution", json={"pipeline_id": pipeline["id"], "run_id": "r-1"}
    )
    retry = client.post(
        "/start_pipeline_execution", json={"pipeline_id": pipeline["id"], "run_id": "r-1"}
    )
    assert (first.status_code, retry.status_code) == (201, 200)
    assert first.json() == retry.json()
    assert live.sql("SELECT count(*) AS n FROM pipeline_execution_closure")[0]["n"] == 1
    other = make_pipeline(client, name="other")
    clash = client.post(
        "/start_pipeline_execution", json={"pipeline_id": other["id"], "run_id": "r-1"}
    )
    assert clash.status_code == 409


def test_nested_executions_keep_closure_rows(client: httpx.Client, live: LiveServer) -> None:
    pipeline = make_pipeline(client)
    root = start(client, pipeline["id"])
    child = start(client, pipeline["id"], parent_id=root)
    grandchild = start(client, pipeline["id"], parent_id=child)
    rows = live.sql(
        "SELECT ancestor_id, descendant_id, depth FROM pipeline_execution_closure ORDER BY 3, 1, 2"
    )
    assert [(r["ancestor_id"], r["descendant_id"], r["depth"]) for r in rows] == [
        (root, root, 0),
        (child, child, 0),
        (grandchild, grandchild, 0),
        (root, child, 1),
        (child, grandchild, 1),
        (root, grandchild, 2),
    ]
    children = client.get(f"/pipeline_execution/{root}").json()["children"]
    assert [c["id"] for c in children] == [child]


def test_end_is_idempotent_with_same_values_and_conflicts_otherwise(client: httpx.Client) -> None:
    pipeline = make_pipeline(client)
    execution = start(client, pipeline["id"])
    assert end(client, execution, inserts=5).status_code == 204
    assert end(client, execution, inserts=5).status_code == 204
    conflict = end(client, execution, inserts=6)
    assert conflict.status_code == 409 and "inserts" in conflict.json()["detail"]
    assert end(client, execution, ok=False, inserts=5).status_code == 409


def test_end_before_start_is_422_and_changes_nothing(client: httpx.Client) -> None:
    pipeline = make_pipeline(client, next_watermark="9")
    execution = start(client, pipeline["id"], start_date=T0.isoformat())
    response = end(client, execution, end_date=(T0 - timedelta(minutes=1)).isoformat())
    assert response.status_code == 422 and response.json()["errors"][0]["loc"] == [
        "body",
        "end_date",
    ]
    assert client.get(f"/pipeline_execution/{execution}").json()["end_date"] is None
    assert client.get(f"/pipeline/{pipeline['id']}").json()["watermark"] is None


def test_end_rejects_negative_counts_and_unknown_ids(client: httpx.Client) -> None:
    pipeline = make_pipeline(client)
    execution = start(client, pipeline["id"])
    negative = end(client, execution, inserts=-1)
    assert negative.status_code == 422 and negative.json()["errors"][0]["loc"] == [
        "body",
        "inserts",
    ]
    huge = end(client, execution, total_rows=2**63)
    assert huge.status_code == 422
    assert end(client, 424242).status_code == 404


def test_last_dml_times_never_move_backwards(client: httpx.Client) -> None:
    pipeline = make_pipeline(client)
    late = start(client, pipeline["id"], start_date=T0.isoformat())
    early = start(client, pipeline["id"], start_date=(T0 - timedelta(hours=2)).isoformat())
    end(client, late, end_date=(T0 + timedelta(minutes=5)).isoformat(), inserts=1)
    end(client, early, end_date=(T0 - timedelta(hours=1)).isoformat(), inserts=1)
    stored = client.get(f"/pipeline/{pipeline['id']}").json()
    assert stored["last_target_insert"] == (T0 + timedelta(minutes=5)).isoformat()


def test_lists_executions_with_filters(client: httpx.Client) -> None:
    pipeline = make_pipeline(client)
    running = start(client, pipeline["id"])
    done = start(client, pipeline["id"])
    end(client, done)

    def ids(**q: Any) -> list[int]:
        return [e["id"] for e in client.get("/pipeline_execution", params=q).json()]

    assert ids(status="running") == [running]
    assert ids(status="succeeded", pipeline_id=pipeline["id"]) == [done]
    assert ids(status="failed") == []
    assert client.get("/pipeline_execution", params={"status": "bogus"}).status_code == 422
