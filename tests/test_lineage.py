from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer
from tests.factories import address, end, make_pipeline, start
from watcher.lineage import MAX_ADDRESSES, closure


def post_lineage(
    client: httpx.Client,
    pipeline_id: int,
    sources: list[str],
    targets: list[str],
    status: int = 201,
) -> dict[str, Any]:
    response = client.post(
        "/address_lineage",
        json={
            "pipeline_id": pipeline_id,
            "source_addresses": [address(s) for s in sources],
            "target_addresses": [address(t) for t in targets],
        },
    )
    assert response.status_code == status, response.text
    answer: dict[str, Any] = response.json()
    return answer


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
    result = post_lineage(client, pipeline["id"], ["a"], ["b"], status=200)
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


def related(client: httpx.Client, live: LiveServer, name: str, **params: int) -> dict[str, Any]:
    r = client.get(f"/address_lineage/{address_id(live, name)}", params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    return {
        side: sorted((a["address_name"], a["depth"]) for a in body[side])
        for side in ("upstream", "downstream")
    }


def closure_rows(live: LiveServer) -> list[tuple[str, str, int]]:
    rows = live.sql(
        "SELECT s.name AS s, t.name AS t, c.depth FROM address_lineage_closure c"
        " JOIN address s ON s.id = c.source_address_id"
        " JOIN address t ON t.id = c.target_address_id ORDER BY 1, 2"
    )
    return [(r["s"], r["t"], r["depth"]) for r in rows]


def test_a_diamond_through_the_api_has_one_row_per_pair_at_the_shortest_depth(
    client: httpx.Client, live: LiveServer
) -> None:
    # a → b → d, a → c → d, d → e: two paths from a to d (and e), one closure row each.
    p = [make_pipeline(client, name=f"p{i}")["id"] for i in range(4)]
    post_lineage(client, p[0], ["a"], ["b", "c"])
    post_lineage(client, p[1], ["b"], ["d"])
    post_lineage(client, p[2], ["c"], ["d"])
    post_lineage(client, p[3], ["d"], ["e"])
    assert closure_rows(live) == [
        ("a", "b", 1),
        ("a", "c", 1),
        ("a", "d", 2),
        ("a", "e", 3),
        ("b", "d", 1),
        ("b", "e", 2),
        ("c", "d", 1),
        ("c", "e", 2),
        ("d", "e", 1),
    ]
    assert related(client, live, "a")["downstream"] == [("b", 1), ("c", 1), ("d", 2), ("e", 3)]
    assert related(client, live, "d") == {
        "upstream": [("a", 2), ("b", 1), ("c", 1)],
        "downstream": [("e", 1)],
    }
    assert related(client, live, "e", depth=2)["upstream"] == [("b", 2), ("c", 2), ("d", 1)]


def test_a_three_address_cycle_through_the_api_terminates_with_shortest_depths(
    client: httpx.Client, live: LiveServer
) -> None:
    p = [make_pipeline(client, name=f"p{i}")["id"] for i in range(3)]
    post_lineage(client, p[0], ["a"], ["b"])
    post_lineage(client, p[1], ["b"], ["c"])
    post_lineage(client, p[2], ["c"], ["a"])  # closes the cycle
    assert closure_rows(live) == [
        ("a", "b", 1),
        ("a", "c", 2),
        ("b", "a", 2),
        ("b", "c", 1),
        ("c", "a", 1),
        ("c", "b", 2),
    ]  # no address is its own ancestor
    assert related(client, live, "a") == {
        "upstream": [("b", 2), ("c", 1)],
        "downstream": [("b", 1), ("c", 2)],
    }
    assert related(client, live, "a", depth=1) == {"upstream": [("c", 1)], "downstream": [("b", 1)]}


def test_unknown_ids_are_404_in_the_error_envelope(client: httpx.Client) -> None:
    for path, detail in [
        ("/address/4242", "address 4242 not found"),
        ("/address_type/4242", "address type 4242 not found"),
        ("/pipeline_execution/4242", None),
    ]:
        r = client.get(path)
        assert r.status_code == 404, (path, r.text)
        assert set(r.json()) == {"detail", "errors"}
        assert detail is None or r.json()["detail"] == detail


def lineage_body(
    sources: list[dict[str, Any]], targets: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {"pipeline_id": 1, "source_addresses": sources, "target_addresses": targets or []}


def test_an_address_without_its_type_group_is_422_naming_it(client: httpx.Client) -> None:
    spec = {"name": "a", "address_type_name": "postgres"}
    r = client.post("/address_lineage", json=lineage_body([spec]))
    assert r.status_code == 422, r.text
    locs = [e["loc"] for e in r.json()["errors"]]
    assert ["body", "source_addresses", 0, "address_type_group_name"] in locs
    assert client.post("/address", json=spec).status_code == 422


def test_more_than_a_thousand_addresses_per_side_is_422(client: httpx.Client) -> None:
    many = [address(f"t{i}") for i in range(MAX_ADDRESSES + 1)]
    r = client.post("/address_lineage", json=lineage_body([address("s")], many))
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["loc"] == ["body", "target_addresses"]


@pytest.mark.parametrize("depth, status", [(0, 422), (1, 200), (1000, 200), (1001, 422)])
def test_lineage_depth_is_bounded(
    client: httpx.Client, live: LiveServer, depth: int, status: int
) -> None:
    post_lineage(client, make_pipeline(client)["id"], ["a"], ["b"])
    r = client.get(f"/address_lineage/{address_id(live, 'a')}", params={"depth": depth})
    assert r.status_code == status, r.text
    if status == 422:
        assert r.json()["errors"][0]["loc"] == ["query", "depth"]


@pytest.mark.parametrize("path", ["/address", "/address_type", "/pipeline", "/pipeline_execution"])
@pytest.mark.parametrize(
    "params, status",
    [
        ({"limit": 1000, "offset": 2**31}, 200),
        ({"limit": 0}, 422),
        ({"limit": 1001}, 422),
        ({"offset": -1}, 422),
        ({"offset": 2**31 + 1}, 422),
        ({"limit": "ten"}, 422),
    ],
)
def test_paging_bounds(
    client: httpx.Client, path: str, params: dict[str, Any], status: int
) -> None:
    r = client.get(path, params=params)
    assert r.status_code == status, r.text
    if status == 422:
        assert r.json()["errors"][0]["loc"] == ["query", next(iter(params))]
