"""Watcher answers the original Watcher's HTTP contract: its routes, status codes, field names
and field types, pinned against the original's own documented payloads.

The reference is github.com/cmgoffena13/etl-watcher at commit
d61b06f1cd7f99d84efe2db9cf2c77b7db954153. The payloads below are copied from its
`docs/api/endpoints.rst` (the examples of each route's section) and its pydantic models in
`src/models/`; where its docs and its code disagree, the code wins (and the test says so).
Watcher may add fields, never rename or drop one: so each test checks that the original's
keys are all there with the original's types, and that the values are right.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer
from tests.factories import address, make_pipeline, start
from watcher.addresses import AddressSpec, ensure

# docs/api/endpoints.rst, "Get Pipeline Execution", response example.
ORIGINAL_EXECUTION: dict[str, Any] = {
    "id": 1,
    "parent_id": None,
    "pipeline_id": 1,
    "start_date": "2024-01-01T10:00:00Z",
    "end_date": "2024-01-01T10:05:00Z",
    "duration_seconds": 300,
    "completed_successfully": True,
    "inserts": 800,
    "updates": 200,
    "soft_deletes": 0,
    "total_rows": 1000,
    "watermark": "2024-01-01T00:00:00Z",
    "next_watermark": "2024-01-01T23:59:59Z",
    "execution_metadata": {"partition": "2025-01-05"},
    "anomaly_flags": {"total_rows": True, "duration_seconds": False},
    "throughput": 3.33,
    "child_executions": [
        {
            "id": 2,
            "parent_id": 1,
            "pipeline_id": 1,
            "start_date": "2024-01-01T10:01:00Z",
            "end_date": "2024-01-01T10:03:00Z",
            "duration_seconds": 120,
            "completed_successfully": True,
            "inserts": 400,
            "updates": 100,
            "soft_deletes": 0,
            "total_rows": 500,
            "watermark": "2024-01-01T00:00:00Z",
            "next_watermark": "2024-01-01T23:59:59Z",
            "execution_metadata": None,
            "anomaly_flags": None,
            "throughput": 4.17,
            "child_executions": [],
        }
    ],
}

# docs/api/endpoints.rst, "Create Address Lineage": request and response examples.
ORIGINAL_LINEAGE_REQUEST = {
    "pipeline_id": 1,
    "source_addresses": [
        {
            "name": "source_db.source_schema.source_table",
            "address_type_name": "postgres",
            "address_type_group_name": "database",
        }
    ],
    "target_addresses": [
        {
            "name": "target_db.target_schema.target_table",
            "address_type_name": "postgres",
            "address_type_group_name": "database",
        }
    ],
}
ORIGINAL_LINEAGE_RESPONSE = {
    "pipeline_id": 1,
    "lineage_relationships_created": 1,
    "message": "Lineage relationships created for pipeline 1",
}

# docs/api/endpoints.rst, "Create or Get Address": request example.
ORIGINAL_ADDRESS = {
    "name": "source_db.source_schema.source_table",
    "address_type_name": "postgres",
    "address_type_group_name": "database",
    "database_name": "source_db",
    "schema_name": "source_schema",
    "table_name": "source_table",
    "primary_key": "id",
    "address_metadata": {
        "external_dependencies": [{"type": "looker_dashboard", "name": "Sales Dashboard"}]
    },
}

# docs/api/endpoints.rst, "Update Anomaly Detection Rule": request example.
ORIGINAL_RULE_PATCH = {
    "id": 1,
    "pipeline_id": 1,
    "metric_field": "updates",
    "z_threshold": 2.5,
    "lookback_days": 30,
    "minimum_executions": 20,
    "active": True,
}

# docs/api/endpoints.rst, "Log Cleanup": response example (src/models/log_cleanup.py,
# LogCleanupPostOutput, has the same six fields, all int >= 0).
ORIGINAL_CLEANUP_RESPONSE = {
    "total_pipeline_executions_deleted": 1000,
    "total_timeliness_pipeline_execution_logs_deleted": 500,
    "total_anomaly_detection_results_deleted": 50,
    "total_pipeline_execution_closure_parent_deleted": 200,
    "total_pipeline_execution_closure_child_deleted": 200,
    "total_freshness_pipeline_logs_deleted": 300,
}

# src/models/lineage_graph.py (the route is undocumented: include_in_schema=False), with the
# types of LineageGraphNode and LineageGraphEdge. `None` marks an Optional field.
ORIGINAL_GRAPH_NODE = {
    "id": int,
    "name": str,
    "address_type_name": str,
    "address_type_group_name": str,
    "address_metadata": (dict, None),
}
ORIGINAL_GRAPH_EDGE = {
    "source_address_id": int,
    "target_address_id": int,
    "depth": int,
    "lineage_path": list,
    "pipeline_id": (int, None),
    "pipeline_name": (str, None),
    "pipeline_type_name": (str, None),
    "pipeline_metadata": (dict, None),
    "pipeline_active": (bool, None),
}


def same_type(value: Any, example: Any) -> bool:
    """`value` has the JSON type of the original's example value (None: any, as nullable)."""
    if example is None or value is None:
        return True
    if isinstance(example, bool) or isinstance(value, bool):
        return isinstance(example, bool) and isinstance(value, bool)
    if isinstance(example, int):
        return isinstance(value, int)
    if isinstance(example, float):
        return isinstance(value, int | float)
    return isinstance(value, type(example))


def assert_original_shape(answer: dict[str, Any], example: dict[str, Any]) -> None:
    missing = example.keys() - answer.keys()
    assert not missing, f"fields of the original missing: {sorted(missing)}"
    wrong = {k: answer[k] for k in example if not same_type(answer[k], example[k])}
    assert not wrong, f"fields of another type than the original's: {wrong}"


def run(client: httpx.Client, pipeline_id: int, begin: datetime, seconds: float, **f: Any) -> int:
    execution = start(client, pipeline_id, start_date=begin.isoformat(), **f)
    body = {
        "id": execution,
        "end_date": (begin + timedelta(seconds=seconds)).isoformat(),
        "completed_successfully": True,
        "inserts": 800,
        "updates": 200,
        "soft_deletes": 0,
        "total_rows": 1000,
    }
    assert client.post("/end_pipeline_execution", json=body).status_code == 204
    return execution


# --- POST /address_lineage -------------------------------------------------------------------


def test_address_lineage_answers_201_when_it_records_relationships(client: httpx.Client) -> None:
    pipeline = make_pipeline(client)
    body = ORIGINAL_LINEAGE_REQUEST | {"pipeline_id": pipeline["id"]}
    recorded = client.post("/address_lineage", json=body)
    assert recorded.status_code == 201, recorded.text
    assert_original_shape(recorded.json(), ORIGINAL_LINEAGE_RESPONSE)
    assert recorded.json()["lineage_relationships_created"] == 1


def test_address_lineage_answers_200_when_load_lineage_is_false(client: httpx.Client) -> None:
    # docs/api/endpoints.rst: "200 OK - Pipeline does not have load_lineage=True".
    pipeline = make_pipeline(client)
    client.patch("/pipeline", json={"id": pipeline["id"], "load_lineage": False})
    skipped = client.post(
        "/address_lineage", json=ORIGINAL_LINEAGE_REQUEST | {"pipeline_id": pipeline["id"]}
    )
    assert skipped.status_code == 200, skipped.text
    assert skipped.json()["lineage_relationships_created"] == 0


# --- GET /pipeline_execution/{id} ------------------------------------------------------------


def test_an_execution_carries_the_original_child_executions_and_children(
    client: httpx.Client,
) -> None:
    pipeline = make_pipeline(client)
    begin = datetime(2024, 1, 1, 10, tzinfo=UTC)
    parent = run(client, pipeline["id"], begin, 300.4)
    child = run(client, pipeline["id"], begin + timedelta(minutes=1), 119.5, parent_id=parent)
    answer = client.get(f"/pipeline_execution/{parent}").json()
    assert_original_shape(answer, ORIGINAL_EXECUTION)
    [item] = answer["child_executions"]
    # The exact item of the original: its fields, no more, no fewer.
    assert item.keys() == ORIGINAL_EXECUTION["child_executions"][0].keys()
    assert_original_shape(item, ORIGINAL_EXECUTION["child_executions"][0])
    assert (item["id"], item["parent_id"], item["child_executions"]) == (child, parent, [])
    assert [c["id"] for c in answer["children"]] == [child]  # Watcher's own list, kept


def test_duration_seconds_is_an_integer_everywhere_in_a_response(
    client: httpx.Client,
) -> None:
    # src/models/pipeline_execution.py: duration_seconds: Optional[int], computed as
    # extract(epoch from end - start) cast to integer (rounded), for parent and children.
    pipeline = make_pipeline(client)
    begin = datetime(2024, 1, 1, 10, tzinfo=UTC)
    parent = run(client, pipeline["id"], begin, 300.4)
    run(client, pipeline["id"], begin + timedelta(minutes=1), 119.5, parent_id=parent)
    answer = client.get(f"/pipeline_execution/{parent}").json()
    durations = [
        answer["duration_seconds"],
        answer["children"][0]["duration_seconds"],
        answer["child_executions"][0]["duration_seconds"],
    ]
    assert durations == [300, 120, 120]
    assert all(type(d) is int for d in durations)
    listed = client.get("/pipeline_execution", params={"pipeline_id": pipeline["id"]}).json()
    assert sorted(e["duration_seconds"] for e in listed) == [120, 300]
    assert all(type(e["duration_seconds"]) is int for e in listed)


# --- POST /address (and every address of POST /address_lineage) ------------------------------


def test_posting_an_address_again_updates_what_changed(client: httpx.Client) -> None:
    first = client.post("/address", json=ORIGINAL_ADDRESS | {"primary_key": None})
    assert first.status_code == 201, first.text
    moved = ORIGINAL_ADDRESS | {"address_type_name": "snowflake", "primary_key": "order_id"}
    again = client.post("/address", json=moved)
    assert again.status_code == 200, again.text
    stored = client.get(f"/address/{first.json()['id']}").json()
    snowflake = client.get("/address_type").json()
    assert stored["address_type_id"] == next(t["id"] for t in snowflake if t["name"] == "snowflake")
    assert stored["primary_key"] == "order_id"
    assert stored["address_metadata"] == ORIGINAL_ADDRESS["address_metadata"]
    assert again.json()["address_type_id"] == stored["address_type_id"]


def test_an_address_left_out_fields_keep_their_stored_values(client: httpx.Client) -> None:
    created = client.post("/address", json=ORIGINAL_ADDRESS).json()
    bare = {
        k: ORIGINAL_ADDRESS[k] for k in ("name", "address_type_name", "address_type_group_name")
    }
    assert client.post("/address", json=bare).status_code == 200
    stored = client.get(f"/address/{created['id']}").json()
    assert (stored["primary_key"], stored["address_metadata"]) == (
        "id",
        ORIGINAL_ADDRESS["address_metadata"],
    )
    assert stored["updated_at"] == created["updated_at"]  # unchanged: not rewritten


def test_addresses_sent_through_lineage_are_updated_too(
    client: httpx.Client, live: LiveServer
) -> None:
    pipeline = make_pipeline(client)
    source = address("shop.public.orders")
    body = {"pipeline_id": pipeline["id"], "source_addresses": [source]}
    body["target_addresses"] = [address("dwh.sales.orders")]
    assert client.post("/address_lineage", json=body).status_code == 201
    body["source_addresses"] = [
        source | {"address_type_name": "mysql", "address_metadata": {"owner": "shop"}}
    ]
    assert client.post("/address_lineage", json=body).status_code == 201
    [row] = live.sql(
        "SELECT t.name AS type, a.address_metadata FROM address a "
        "JOIN address_type t ON t.id = a.address_type_id WHERE a.name = 'shop.public.orders'"
    )
    assert row == {"type": "mysql", "address_metadata": {"owner": "shop"}}


# --- PATCH /pipeline and /pipeline_type: one half of a rule pair -----------------------------


@pytest.mark.parametrize("route", ["/pipeline", "/pipeline_type"])
def test_half_a_rule_pair_merges_with_the_stored_half(client: httpx.Client, route: str) -> None:
    pair: dict[str, Any] = {"timeliness_number": 2, "timeliness_datepart": "hour"}
    if route == "/pipeline":
        row_id = make_pipeline(client, **pair)["id"]
    else:
        row_id = client.post("/pipeline_type", json={"name": "t", **pair}).json()["id"]
    patched = client.patch(route, json={"id": row_id, "timeliness_number": 7})
    assert patched.status_code == 200, patched.text
    assert (patched.json()["timeliness_number"], patched.json()["timeliness_datepart"]) == (
        7,
        "hour",
    )
    datepart = client.patch(route, json={"id": row_id, "timeliness_datepart": "day"})
    assert datepart.status_code == 200, datepart.text
    assert datepart.json()["timeliness_number"] == 7


@pytest.mark.parametrize("route", ["/pipeline", "/pipeline_type"])
def test_half_a_pair_with_nothing_stored_is_422_naming_the_missing_half(
    client: httpx.Client, route: str
) -> None:
    if route == "/pipeline":
        row_id = make_pipeline(client)["id"]
    else:
        row_id = client.post("/pipeline_type", json={"name": "t"}).json()["id"]
    refused = client.patch(route, json={"id": row_id, "freshness_number": 7})
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["loc"] == ["body", "freshness_datepart"]
    assert client.get(f"{route}/{row_id}").json()["freshness_number"] is None


# --- PATCH /anomaly_detection_rule -----------------------------------------------------------


def test_a_rule_patch_applies_metric_field_and_pipeline_id(client: httpx.Client) -> None:
    # src/database/anomaly_detection_utils.py, db_update_anomaly_detection_rule: every field
    # set in the body is applied (setattr), pipeline_id and metric_field included.
    first, second = make_pipeline(client, "a")["id"], make_pipeline(client, "b")["id"]
    rule = client.post(
        "/anomaly_detection_rule", json={"pipeline_id": first, "metric_field": "inserts"}
    ).json()
    body = ORIGINAL_RULE_PATCH | {"id": rule["id"], "pipeline_id": second}
    patched = client.patch("/anomaly_detection_rule", json=body)
    assert patched.status_code == 200, patched.text
    expected = {k: v for k, v in body.items()}
    assert {k: patched.json()[k] for k in expected} == expected


def test_a_rule_patch_onto_a_taken_metric_or_unknown_pipeline_is_refused(
    client: httpx.Client,
) -> None:
    pipeline = make_pipeline(client)["id"]
    rules = [
        client.post(
            "/anomaly_detection_rule", json={"pipeline_id": pipeline, "metric_field": m}
        ).json()["id"]
        for m in ("inserts", "updates")
    ]
    taken = client.patch(
        "/anomaly_detection_rule", json={"id": rules[0], "metric_field": "updates"}
    )
    assert taken.status_code == 409 and taken.json()["errors"][0]["loc"] == ["body", "metric_field"]
    unknown = client.patch("/anomaly_detection_rule", json={"id": rules[0], "pipeline_id": 4242})
    assert unknown.status_code == 404
    assert unknown.json()["errors"][0]["loc"] == ["body", "pipeline_id"]
    stored = client.get(f"/anomaly_detection_rule/{rules[0]}").json()
    assert (stored["pipeline_id"], stored["metric_field"]) == (pipeline, "inserts")


# --- POST /log_cleanup -----------------------------------------------------------------------


def test_log_cleanup_answers_the_original_counters_beside_ours(
    client: httpx.Client, live: LiveServer
) -> None:
    pipeline = make_pipeline(client)["id"]
    old = datetime.now(UTC) - timedelta(days=200)
    old_parent = run(client, pipeline, old, 60)
    run(client, pipeline, old + timedelta(minutes=1), 10, parent_id=old_parent)
    # A recent parent with a child that (by its start_date) is old: the original deletes that
    # closure row in its second pass, by the child.
    recent_parent = start(client, pipeline)
    start(client, pipeline, parent_id=recent_parent, start_date=old.isoformat())
    answer = client.post("/log_cleanup", json={"retention_days": 90, "batch_size": 10000})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert_original_shape(body, ORIGINAL_CLEANUP_RESPONSE)
    assert {k: body[k] for k in ORIGINAL_CLEANUP_RESPONSE} == {
        "total_pipeline_executions_deleted": 3,
        "total_timeliness_pipeline_execution_logs_deleted": 0,
        "total_anomaly_detection_results_deleted": 0,
        # self rows of the 3 old executions, old parent -> old child
        "total_pipeline_execution_closure_parent_deleted": 4,
        # recent parent -> old child
        "total_pipeline_execution_closure_child_deleted": 1,
        "total_freshness_pipeline_logs_deleted": 0,
    }
    assert body["deleted"]["pipeline_execution"] == 3  # ours, kept
    assert body["deleted"]["pipeline_execution_closure"] == 5


# --- GET /lineage-graph/ and POST /lineage-graph/refresh --------------------------------------


def test_the_lineage_graph_route_answers_the_original_shape(
    client: httpx.Client, live: LiveServer
) -> None:
    pipeline = make_pipeline(client)
    body = ORIGINAL_LINEAGE_REQUEST | {"pipeline_id": pipeline["id"]}
    assert client.post("/address_lineage", json=body).status_code == 201
    # src/routes/lineage_graph.py: POST /lineage-graph/refresh answers status and message.
    refreshed = client.post("/lineage-graph/refresh")
    assert refreshed.status_code == 200 and refreshed.json()["status"] == "success"
    [source] = live.sql("SELECT id FROM address WHERE name LIKE 'source_db.%'")
    answer = client.get("/lineage-graph/", params={"source_address_id": source["id"]})
    assert answer.status_code == 200, answer.text
    graph = answer.json()
    assert graph.keys() == {"nodes", "edges"}
    assert len(graph["nodes"]) == 2 and len(graph["edges"]) == 1
    for node in graph["nodes"]:
        assert node.keys() == ORIGINAL_GRAPH_NODE.keys()
        assert all(
            isinstance(node[k], t) or node[k] is None for k, t in _types(ORIGINAL_GRAPH_NODE)
        )
    [edge] = graph["edges"]
    assert edge.keys() == ORIGINAL_GRAPH_EDGE.keys()
    assert all(isinstance(edge[k], t) or edge[k] is None for k, t in _types(ORIGINAL_GRAPH_EDGE))
    assert edge["lineage_path"] == [edge["source_address_id"], edge["target_address_id"]]
    assert (edge["depth"], edge["pipeline_id"]) == (1, pipeline["id"])


def test_the_lineage_graph_of_an_unknown_address_is_empty_as_in_the_original(
    client: httpx.Client,
) -> None:
    answer = client.get("/lineage-graph/", params={"source_address_id": 4242})
    assert answer.status_code == 200 and answer.json() == {"nodes": [], "edges": []}
    missing = client.get("/lineage-graph/")
    assert missing.status_code == 422
    assert missing.json()["errors"][0]["loc"] == ["query", "source_address_id"]


def _types(shape: dict[str, Any]) -> list[tuple[str, tuple[type, ...]]]:
    out = []
    for key, kind in shape.items():
        kinds = kind if isinstance(kind, tuple) else (kind,)
        out.append((key, tuple(k for k in kinds if k is not None)))
    return out


def test_concurrent_updates_of_the_same_addresses_neither_deadlock_nor_fail(
    client: httpx.Client, live: LiveServer
) -> None:
    """Writers changing the same addresses, given in opposite orders, each holding its row
    locks a while: they take them in one order (by name), so they queue, never deadlock."""
    names = ["a.s.one", "a.s.two", "a.s.three"]
    for name in names:
        assert client.post("/address", json=address(name)).status_code == 201

    def specs(version: int, order: list[str]) -> list[AddressSpec]:
        return [
            AddressSpec.model_validate(address(n) | {"address_metadata": {"v": version}})
            for n in order
        ]

    async def writer(version: int, order: list[str]) -> None:
        async with live.services.engine.begin() as conn:
            await ensure(conn, specs(version, order))
            await asyncio.sleep(0.05)  # hold the row locks while the others queue

    async def race() -> None:
        await asyncio.gather(*(writer(v, names if v % 2 else names[::-1]) for v in range(1, 9)))

    live.run(race)
    rows = live.sql("SELECT address_metadata FROM address WHERE name LIKE 'a.s.%'")
    assert len({r["address_metadata"]["v"] for r in rows}) == 1  # one writer's values, whole
