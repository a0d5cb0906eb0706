"""The lineage graph: GET /lineage-graph/ and the Grafana "Lineage" dashboard that draws it.

There is no Grafana server here: the dashboard is checked structurally (a Node Graph panel on
the provisioned PostgreSQL datasource, frames named `nodes` and `edges`, a single-value
address variable) and every SQL query of it runs against the real PostgreSQL, where its rows
must be the frames a node graph needs and the same graph as the HTTP route answers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer
from tests.factories import address, make_pipeline

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "grafana" / "dashboards" / "watcher-lineage.json"


def declare(client: httpx.Client, pipeline: str, sources: list[str], targets: list[str]) -> None:
    body = {
        "pipeline_id": make_pipeline(client, name=pipeline)["id"],
        "source_addresses": [address(s) for s in sources],
        "target_addresses": [address(t) for t in targets],
    }
    assert client.post("/address_lineage", json=body).status_code == 201


@pytest.fixture
def lineage(client: httpx.Client, live: LiveServer) -> dict[str, int]:
    """raw → stage → mart ← ref; stage → mart twice (two pipelines); island → elsewhere."""
    declare(client, "load", ["raw"], ["stage"])
    declare(client, "model", ["stage", "ref"], ["mart"])
    declare(client, "backfill", ["stage"], ["mart"])
    declare(client, "other", ["island"], ["elsewhere"])
    rows = live.sql("SELECT name, id FROM address")
    return {r["name"]: int(r["id"]) for r in rows}


def http_graph(client: httpx.Client, address_id: int) -> dict[str, Any]:
    response = client.get("/lineage-graph/", params={"source_address_id": address_id})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_the_graph_is_the_reach_of_the_address_and_the_edges_touching_it(
    client: httpx.Client, lineage: dict[str, int]
) -> None:
    graph = http_graph(client, lineage["stage"])
    names = {n["id"]: n["name"] for n in graph["nodes"]}
    assert sorted(names.values()) == ["mart", "raw", "ref", "stage"]
    edges = sorted(
        (names[e["source_address_id"]], names[e["target_address_id"]], e["pipeline_name"])
        for e in graph["edges"]
    )
    assert edges == [
        ("raw", "stage", "load"),
        ("ref", "mart", "model"),  # touches mart, downstream of stage: drawn as the original
        ("stage", "mart", "backfill"),
        ("stage", "mart", "model"),
    ]
    assert http_graph(client, lineage["island"])["nodes"][0]["name"] in {"island", "elsewhere"}


def test_the_graph_follows_lineage_changes_without_a_refresh(
    client: httpx.Client, lineage: dict[str, int]
) -> None:
    declare(client, "load", ["raw"], [])  # load_lineage still on: the edge is replaced
    names = {n["name"] for n in http_graph(client, lineage["raw"])["nodes"]}
    assert names == set()


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())  # type: ignore[no-any-return]


def node_graph_targets() -> dict[str, str]:
    [panel] = [p for p in dashboard()["panels"] if p["type"] == "nodeGraph"]
    assert panel["datasource"] == {"type": "postgres", "uid": "watcher-postgres"}
    assert all(t["format"] == "table" and t["rawQuery"] for t in panel["targets"])
    return {t["refId"]: t["rawSql"] for t in panel["targets"]}


def test_the_dashboard_has_a_node_graph_of_nodes_and_edges_around_an_address() -> None:
    assert node_graph_targets().keys() == {"nodes", "edges"}
    [variable] = dashboard()["templating"]["list"]
    assert variable["name"] == "address" and variable["type"] == "query"
    assert variable["datasource"]["uid"] == "watcher-postgres"
    assert not variable["multi"] and not variable["includeAll"]  # one address: $address is an id
    panel_sql = " ".join(node_graph_targets().values())
    assert "$address" in panel_sql


def run_panel(live: LiveServer, sql: str, address_id: int) -> list[dict[str, Any]]:
    return live.sql(sql.replace("$address", str(address_id)))


@pytest.mark.parametrize("around", ["raw", "stage", "mart", "island"])
def test_the_dashboard_queries_draw_the_same_graph_as_the_route(
    client: httpx.Client, live: LiveServer, lineage: dict[str, int], around: str
) -> None:
    targets = node_graph_targets()
    nodes = run_panel(live, targets["nodes"], lineage[around])
    edges = run_panel(live, targets["edges"], lineage[around])
    assert nodes and edges
    # The frames a node graph needs: nodes id/title(/subtitle/mainstat), edges id/source/target.
    assert {"id", "title", "subtitle", "mainstat"} <= nodes[0].keys()
    assert {"id", "source", "target", "mainstat"} <= edges[0].keys()
    node_ids = [n["id"] for n in nodes]
    assert len(node_ids) == len(set(node_ids))
    assert len({e["id"] for e in edges}) == len(edges)
    assert {e["source"] for e in edges} | {e["target"] for e in edges} == set(node_ids)
    graph = http_graph(client, lineage[around])
    assert {(n["id"], n["title"]) for n in nodes} == {
        (str(n["id"]), n["name"]) for n in graph["nodes"]
    }
    assert sorted((e["source"], e["target"], e["mainstat"]) for e in edges) == sorted(
        (str(e["source_address_id"]), str(e["target_address_id"]), e["pipeline_name"])
        for e in graph["edges"]
    )
    assert [n["id"] for n in nodes if n["detail__selected"]] == [str(lineage[around])]


def test_the_address_variable_lists_every_address_by_name(
    live: LiveServer, lineage: dict[str, int]
) -> None:
    [variable] = dashboard()["templating"]["list"]
    rows = live.sql(variable["query"])
    assert {r["__text"]: r["__value"] for r in rows} == lineage
