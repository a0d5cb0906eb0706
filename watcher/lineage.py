"""Address lineage: a pipeline's edges (sources × targets) and the reachability closure.

The closure stores, for every pair of addresses joined by a directed path, the shortest
distance. It is recomputed per weakly connected component touched by a change, with a
breadth-first search per node (`closure`), so diamonds give one row per pair and cycles
terminate. Writers of lineage serialise on one advisory lock: lineage is declared rarely
(once per pipeline until `load_lineage` is set again) and the component rebuild must not
interleave with another's.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request

from watcher import addresses
from watcher.db import locks
from watcher.db.engine import transaction
from watcher.errors import NotFound
from watcher.fields import Body, Id
from watcher.routing import Reply, Router, path_id
from watcher.services import services_of

router = Router("lineage")

MAX_ADDRESSES = 1000


class LineageBody(Body):
    pipeline_id: Id
    source_addresses: list[addresses.AddressSpec] = Field(
        default_factory=list, max_length=MAX_ADDRESSES
    )
    target_addresses: list[addresses.AddressSpec] = Field(
        default_factory=list, max_length=MAX_ADDRESSES
    )


class DepthQuery(Body):
    depth: int | None = Field(default=None, ge=1, le=1000)


class LineageRecorded(BaseModel):
    pipeline_id: int
    lineage_relationships_created: int
    message: str


class RelatedAddress(BaseModel):
    address_id: int
    address_name: str
    address_type_name: str
    address_type_group_name: str
    depth: int


class Lineage(BaseModel):
    address_id: int
    address_name: str
    upstream: list[RelatedAddress]
    downstream: list[RelatedAddress]


def closure(edges: Iterable[tuple[int, int]]) -> dict[tuple[int, int], int]:
    """Shortest path length for every (source, target) pair with a directed path, source ≠ target."""
    successors: dict[int, set[int]] = defaultdict(set)
    for source, target in edges:
        if source != target:
            successors[source].add(target)
    result: dict[tuple[int, int], int] = {}
    for origin in list(successors):
        seen = {origin: 0}
        queue = deque([origin])
        while queue:
            node = queue.popleft()
            for nxt in successors.get(node, ()):
                if nxt not in seen:
                    seen[nxt] = seen[node] + 1
                    queue.append(nxt)
        result.update({(origin, t): d for t, d in seen.items() if t != origin})
    return result


COMPONENT_SQL = text("""
WITH RECURSIVE component(id) AS (
    SELECT unnest(CAST(:ids AS bigint[]))
    UNION
    SELECT CASE WHEN l.source_address_id = c.id THEN l.target_address_id
                ELSE l.source_address_id END
    FROM component c
    JOIN address_lineage l ON l.source_address_id = c.id OR l.target_address_id = c.id
)
SELECT id FROM component
""")


async def rebuild_closure(conn: AsyncConnection, touched: set[int]) -> None:
    """Recompute closure rows for the components containing `touched` addresses."""
    if not touched:
        return
    component = [r.id for r in await conn.execute(COMPONENT_SQL, {"ids": sorted(touched)})]
    edges = await conn.execute(
        text(
            "SELECT DISTINCT source_address_id, target_address_id FROM address_lineage "
            "WHERE source_address_id = ANY(CAST(:ids AS bigint[]))"
        ),
        {"ids": component},
    )
    pairs = closure((r.source_address_id, r.target_address_id) for r in edges)
    await conn.execute(
        text(
            "DELETE FROM address_lineage_closure WHERE source_address_id = ANY(CAST(:ids AS bigint[]))"
        ),
        {"ids": component},
    )
    if pairs:
        await conn.execute(
            text(
                "INSERT INTO address_lineage_closure (source_address_id, target_address_id, depth) "
                "SELECT * FROM unnest(CAST(:s AS bigint[]), CAST(:t AS bigint[]), CAST(:d AS int[]))"
            ),
            {"s": [s for s, _ in pairs], "t": [t for _, t in pairs], "d": list(pairs.values())},
        )


async def replace_edges(
    conn: AsyncConnection, body: LineageBody, *, respect_load_lineage: bool = True
) -> tuple[dict[str, Any], bool]:
    """Replace the pipeline's edges with sources × targets, unless its load_lineage is false
    (OpenLineage passes respect_load_lineage=False: its edges follow the latest run).
    (result, recorded): recorded is False when load_lineage is false and nothing changed."""
    pipeline = (
        await conn.execute(
            text("SELECT id, load_lineage FROM pipeline WHERE id = :id FOR UPDATE"),
            {"id": body.pipeline_id},
        )
    ).first()
    if pipeline is None:
        raise NotFound(
            f"pipeline {body.pipeline_id} not found",
            [{"loc": ["body", "pipeline_id"], "msg": "no such pipeline"}],
        )
    if respect_load_lineage and not pipeline.load_lineage:
        return {
            "pipeline_id": body.pipeline_id,
            "lineage_relationships_created": 0,
            "message": "load_lineage is false for this pipeline; lineage not changed",
        }, False
    await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": locks.LINEAGE})
    ids = await addresses.ensure(conn, [*body.source_addresses, *body.target_addresses])
    old = await conn.execute(
        text(
            "DELETE FROM address_lineage WHERE pipeline_id = :p "
            "RETURNING source_address_id, target_address_id"
        ),
        {"p": body.pipeline_id},
    )
    touched = {a for r in old for a in (r.source_address_id, r.target_address_id)}
    edges = sorted(
        {(ids[s.name], ids[t.name]) for s in body.source_addresses for t in body.target_addresses}
    )
    if edges:
        await conn.execute(
            text(
                "INSERT INTO address_lineage (pipeline_id, source_address_id, target_address_id) "
                "SELECT :p, * FROM unnest(CAST(:s AS bigint[]), CAST(:t AS bigint[]))"
            ),
            {"p": body.pipeline_id, "s": [s for s, _ in edges], "t": [t for _, t in edges]},
        )
    await rebuild_closure(conn, touched | {a for e in edges for a in e})
    return {
        "pipeline_id": body.pipeline_id,
        "lineage_relationships_created": len(edges),
        "message": f"{len(edges)} lineage relationships recorded",
    }, True


@router.post(
    "/address_lineage",
    scope="ingest",
    body=LineageBody,
    response=LineageRecorded,
    status_code=201,
    responses={200: ("load_lineage is false: nothing recorded", LineageRecorded)},
)
async def create_lineage(request: Request, body: LineageBody) -> Reply:
    """Replace the pipeline's lineage edges with sources × targets (201); skipped when
    load_lineage is false (200), as the original Watcher answers."""
    async with transaction(services_of(request).engine) as conn:
        result, recorded = await replace_edges(conn, body)
    return Reply(result, 201 if recorded else 200)


RELATED_SQL = """
SELECT a.id AS address_id, a.name AS address_name, t.name AS address_type_name,
       t.group_name AS address_type_group_name, c.depth
FROM address_lineage_closure c
JOIN address a ON a.id = c.{other}
JOIN address_type t ON t.id = a.address_type_id
WHERE c.{this} = :id AND c.depth <= :depth
ORDER BY c.depth, a.name
"""
UPSTREAM = text(RELATED_SQL.format(this="target_address_id", other="source_address_id"))
DOWNSTREAM = text(RELATED_SQL.format(this="source_address_id", other="target_address_id"))


@router.get("/address_lineage/{id:int}", query=DepthQuery, response=Lineage)
async def get_lineage(request: Request, query: DepthQuery) -> dict[str, Any]:
    """Upstream and downstream addresses of an address, with their distance (`?depth=N` limits)."""
    address_id = path_id(request)
    params = {"id": address_id, "depth": query.depth or 2**31 - 1}
    async with transaction(services_of(request).engine) as conn:
        found = (
            await conn.execute(text("SELECT id, name FROM address WHERE id = :id"), params)
        ).first()
        if found is None:
            raise NotFound(f"address {address_id} not found")
        upstream = [dict(r._mapping) for r in await conn.execute(UPSTREAM, params)]
        downstream = [dict(r._mapping) for r in await conn.execute(DOWNSTREAM, params)]
    return {
        "address_id": address_id,
        "address_name": found.name,
        "upstream": upstream,
        "downstream": downstream,
    }
