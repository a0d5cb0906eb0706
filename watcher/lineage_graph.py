"""The original Watcher's lineage graph routes: the graph around an address, nodes and edges.

`GET /lineage-graph/?source_address_id=N` answers what the original's page draws, in its
shape: the addresses reachable from N downstream and upstream (with N itself) are the graph's
reach, every direct edge (one per pipeline declaring it) touching the reach is an edge, and
the endpoints of those edges are the nodes. The original reads a materialized view that
`POST /lineage-graph/refresh` refreshes; Watcher's closure is rebuilt in the transaction that
changes lineage, so the graph is always current and the refresh has nothing to do.

The Grafana "Lineage" dashboard (grafana/generate.py) draws the same graph with the same
selection written as SQL; tests/test_lineage_graph.py checks that the two agree.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from sqlalchemy import text
from starlette.requests import Request

from watcher.db.engine import transaction
from watcher.fields import Body, Id
from watcher.routing import Router
from watcher.services import services_of

router = Router("lineage")


class GraphQuery(Body):
    source_address_id: Id


class GraphNode(BaseModel):
    id: int
    name: str
    address_type_name: str
    address_type_group_name: str
    address_metadata: dict[str, Any] | None


class GraphEdge(BaseModel):
    source_address_id: int
    target_address_id: int
    depth: int
    lineage_path: list[int]
    pipeline_id: int | None
    pipeline_name: str | None
    pipeline_type_name: str | None
    pipeline_metadata: dict[str, Any] | None
    pipeline_active: bool | None


class Graph(BaseModel):
    nodes: list[GraphNode]
    edges: list[GraphEdge]


class Refreshed(BaseModel):
    status: str
    message: str


# The reach: the address, everything downstream and upstream of it (the closure). One probe
# of each closure index, then the edges of those addresses: the cost follows the graph shown,
# not the whole lineage.
GRAPH_SQL = text("""
WITH reach AS (
    SELECT CAST(:id AS bigint) AS id
    UNION SELECT target_address_id FROM address_lineage_closure WHERE source_address_id = :id
    UNION SELECT source_address_id FROM address_lineage_closure WHERE target_address_id = :id
)
SELECT l.source_address_id, l.target_address_id, l.pipeline_id,
       p.name AS pipeline_name, pt.name AS pipeline_type_name, p.pipeline_metadata,
       p.active AS pipeline_active,
       s.name AS source_name, st.name AS source_type, st.group_name AS source_group,
       s.address_metadata AS source_metadata,
       t.name AS target_name, tt.name AS target_type, tt.group_name AS target_group,
       t.address_metadata AS target_metadata
FROM address_lineage l
JOIN address s ON s.id = l.source_address_id
JOIN address_type st ON st.id = s.address_type_id
JOIN address t ON t.id = l.target_address_id
JOIN address_type tt ON tt.id = t.address_type_id
JOIN pipeline p ON p.id = l.pipeline_id
JOIN pipeline_type pt ON pt.id = p.pipeline_type_id
WHERE l.source_address_id IN (SELECT id FROM reach) OR l.target_address_id IN (SELECT id FROM reach)
ORDER BY l.source_address_id, l.target_address_id, l.pipeline_id
""")


def _node(row: Any, side: str) -> dict[str, Any]:
    return {
        "id": getattr(row, f"{side}_address_id"),
        "name": getattr(row, f"{side}_name"),
        "address_type_name": getattr(row, f"{side}_type"),
        "address_type_group_name": getattr(row, f"{side}_group"),
        "address_metadata": getattr(row, f"{side}_metadata"),
    }


def graph(rows: list[Any]) -> dict[str, list[dict[str, Any]]]:
    """Nodes (each address once, in order of appearance) and edges (one per row)."""
    nodes: dict[int, dict[str, Any]] = {}
    edges = []
    for row in rows:
        for side in ("source", "target"):
            node = _node(row, side)
            nodes.setdefault(node["id"], node)
        edges.append(
            {
                "source_address_id": row.source_address_id,
                "target_address_id": row.target_address_id,
                "depth": 1,
                "lineage_path": [row.source_address_id, row.target_address_id],
                "pipeline_id": row.pipeline_id,
                "pipeline_name": row.pipeline_name,
                "pipeline_type_name": row.pipeline_type_name,
                "pipeline_metadata": row.pipeline_metadata,
                "pipeline_active": row.pipeline_active,
            }
        )
    return {"nodes": list(nodes.values()), "edges": edges}


@router.get("/lineage-graph/", query=GraphQuery, response=Graph)
async def get_lineage_graph(request: Request, query: GraphQuery) -> dict[str, Any]:
    """The lineage graph around an address (the original Watcher's route and shape); an address
    without lineage, or unknown, has an empty graph, as in the original."""
    async with transaction(services_of(request).engine) as conn:
        rows = list(await conn.execute(GRAPH_SQL, {"id": query.source_address_id}))
    return graph(rows)


@router.post("/lineage-graph/refresh", scope="read", response=Refreshed)
async def refresh_lineage_graph(request: Request) -> dict[str, str]:
    """Nothing to refresh: the graph reads the closure, current in every transaction. Kept so
    the original Watcher's callers get its success answer."""
    return {
        "status": "success",
        "message": "lineage graph is always current: nothing to refresh",
    }
