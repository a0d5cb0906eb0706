from __future__ import annotations

import httpx

from tests.conftest import LiveServer
from tests.factories import address, end, make_pipeline, start
from watcher.lineage import closure


def post_lineage(
    client: httpx.Client, pipeline_id: int, sources: list[str], targets: list[str]
) -> dict:
    response = client.post(
        "/address_lineage",
        json={
            "pipeline_id": pipeline_id,
            "source_addresses": [address(s) for s in sources],
            "target_addresses": [address(t) for t in targets],
        },
    )
    assert response.status_code == 200, response.text
    return response.json()


def address_id(live: LiveServer, name: str) -> int:
    return int(live.sql("SELECT id FROM address WHERE name = :n", n=name)[0]["id"])


def test_closure_gives_shortest_distances_in_a_diamond() -> None:
    assert closure([(1, 2), (1, 3), (2, 4), (3, 4), (4, 5)]) == {
        (1, 2): 1,
        (1, 3): 1,
        (1, 4): 2,
        (1, 5): 3,
        (2, 4): 1,
        (2, 5): 2,
        (3, 4): 1,
        (3, 5): 2,
        (4, 5): 1,
    }


def test_closure_terminates_on_cycles() -> None:
    assert closure([(1, 2), (2, 3), (3, 1)]) == {
        (1, 2): 1,
        (1, 3): 2,
        (2, 3): 1,
        (2, 1): 2,
        (3, 1): 1,
        (3, 2): 2,
    }
    assert closure([(1, 1)]) == {}


def test_it_records_sources_times_targets_and_splits_database_names(
    client: httpx.Client, live: LiveServer
) -> None:
    pipeline = make_pipeline(client)
    result = post_lineage(client, pipeline["id"], ["raw.public.a", "raw.public.b"], ["dw.core.c"])
    assert result["lineage_relationships_created"] == 2
    row = live.sql(
        "SELECT database_name, schema_name, table_name FROM address WHERE name = 'dw.core.c'"
    )[0]
    assert row == {"database_name": "dw", "schema_name": "core", "table_name": "c"}


def test_upstream_and_downstream_with_depth(client: httpx.Client, live: LiveServer) -> None:
    p1, p2 = make_pipeline(client, name="p1"), make_pipeline(client, name="p2")
    post_lineage(client, p1["id"], ["a"], ["b"])
    post_lineage(client, p2["id"], ["b"], ["c"])
    b = client.get(f"/address_lineage/{address_id(live, 'b')}").json()
    assert [(u["address_name"], u["depth"]) for u in b["upstream"]] == [("a", 1)]
    assert [(d["address_name"], d["depth"]) for d in b["downstream"]] == [("c", 1)]
    a = client.get(f"/address_lineage/{address_id(live, 'a')}").json()
    assert [(d["address_name"], d["depth"]) for d in a["downstream"]] == [("b", 1), ("c", 2)]
    limited = client.get(f"/address_lineage/{address_id(live, 'a')}", params={"depth": 1}).json()
    assert [d["address_name"] for d in limited["downstream"]] == ["b"]
    assert client.get("/address_lineage/99999").status_code == 404


def test_replacing_edges_rebuilds_the_closure(client: httpx.Client, live: LiveServer) -> None:
    p1, p2 = make_pipeline(client, name="p1"), make_pipeline(client, name="p2")
    post_lineage(client, p1["id"], ["a"], ["b"])
    post_lineage(client, p2["id"], ["b"], ["c"])
    post_lineage(client, p1["id"], ["x"], ["b"])  # p1 no longer reads a
    a = client.get(f"/address_lineage/{address_id(live, 'a')}").json()
    assert a["downstream"] == []
    c = client.get(f"/address_lineage/{address_id(live, 'c')}").json()
    assert sorted((u["address_name"], u["depth"]) for u in c["upstream"]) == [("b", 1), ("x", 2)]


def test_two_pipelines_may_declare_the_same_edge(client: httpx.Client, live: LiveServer) -> None:
    p1, p2 = make_pipeline(client, name="p1"), make_pipeline(client, name="p2")
    post_lineage(client, p1["id"], ["a"], ["b"])
    post_lineage(client, p2["id"], ["a"], ["b"])
    assert live.sql("SELECT count(*) AS n FROM address_lineage")[0]["n"] == 2
    assert live.sql("SELECT count(*) AS n FROM address_lineage_closure")[0]["n"] == 1


def test_cycles_are_stored_with_shortest_depths(client: httpx.Client, live: LiveServer) -> None:
    p1, p2 = make_pipeline(client, name="p1"), make_pipeline(client, name="p2")
    post_lineage(client, p1["id"], ["a"], ["b"])
    post_lineage(client, p2["id"], ["b"], ["a"])
    a = client.get(f"/address_lineage/{address_id(live, 'a')}").json()
    assert [(u["address_name"], u["depth"]) for u in a["upstream"]] == [("b", 1)]


def test_it_skips_when_load_lineage_is_false(client: httpx.Client, live: LiveServer) -> None:
    pipeline = make_pipeline(client)
    end(client, start(client, pipeline["id"]))  # a successful end resets load_lineage
    result = post_lineage(client, pipeline["id"], ["a"], ["b"])
    assert result["lineage_relationships_created"] == 0
    assert live.sql("SELECT count(*) AS n FROM address_lineage")[0]["n"] == 0


def test_it_accepts_address_name_alias_and_rejects_unknown_pipeline(client: httpx.Client) -> None:
    body = {
        "pipeline_id": 4242,
        "source_addresses": [
            {"address_name": "a", "address_type_name": "s3", "address_type_group_name": "storage"}
        ],
        "target_addresses": [],
    }
    assert client.post("/address_lineage", json=body).status_code == 404


def test_addresses_create_or_get_and_patch(client: httpx.Client) -> None:
    created = client.post("/address", json=address("Db.Sch.T1"))
    again = client.post("/address", json=address("db.sch.t1"))
    assert (created.status_code, again.status_code) == (201, 200)
    assert created.json()["table_name"] == "t1"
    patched = client.patch("/address", json={"name": "db.sch.t1", "primary_key": "id"})
    assert patched.json()["primary_key"] == "id"
    types = client.get("/address_type").json()
    assert [(t["name"], t["group_name"]) for t in types] == [("postgres", "database")]
    assert (
        client.post("/address_type", json={"name": "kafka", "group_name": "stream"}).status_code
        == 201
    )
    assert (
        client.patch("/address_type", json={"name": "kafka", "group_name": "queue"}).json()[
            "group_name"
        ]
        == "queue"
    )
