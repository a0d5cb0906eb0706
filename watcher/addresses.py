"""Address types and addresses (tables, buckets, APIs, topics) that lineage connects."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AliasChoices, Field, model_validator
from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request

from watcher import crud
from watcher.db.engine import transaction
from watcher.db.schema import address, address_type
from watcher.fields import Body, Metadata, Name, Row
from watcher.routing import Reply, Router, path_id
from watcher.services import services_of

router = Router("addresses")

Part = str | None


class AddressTypeCreate(Body):
    name: Name
    group_name: Name


class AddressTypePatch(crud.ByIdOrName):
    group_name: Name | None = None


class AddressSpec(Body):
    """An address as pipelines declare it; `address_name` is accepted for `name`."""

    name: Name = Field(validation_alias=AliasChoices("name", "address_name"))
    address_type_name: Name
    address_type_group_name: Name
    database_name: Part = Field(default=None, max_length=150)
    schema_name: Part = Field(default=None, max_length=150)
    table_name: Part = Field(default=None, max_length=150)
    primary_key: Part = Field(default=None, max_length=150)
    address_metadata: Metadata = None

    @model_validator(mode="after")
    def _split_database_name(self) -> AddressSpec:
        """A `database` group address named db.schema.table fills the three parts."""
        if self.address_type_group_name == "database":
            parts = self.name.split(".")
            if len(parts) == 3 and all(parts):
                self.database_name = self.database_name or parts[0]
                self.schema_name = self.schema_name or parts[1]
                self.table_name = self.table_name or parts[2]
        return self


class AddressPatch(crud.ByIdOrName):
    address_type_name: Name | None = None
    database_name: Part = Field(default=None, max_length=150)
    schema_name: Part = Field(default=None, max_length=150)
    table_name: Part = Field(default=None, max_length=150)
    primary_key: Part = Field(default=None, max_length=150)
    address_metadata: Metadata = None


class AddressType(Row):
    id: int
    name: str
    group_name: str
    created_at: datetime
    updated_at: datetime


class Address(Row):
    id: int
    name: str
    address_type_id: int
    database_name: str | None
    schema_name: str | None
    table_name: str | None
    primary_key: str | None
    address_metadata: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime


# One statement: create missing types, update the addresses whose type, parts, primary key or
# metadata changed (a field not given keeps its stored value), insert the new ones.
# `changed` locks only the rows that differ, in name order: an unchanged address (the steady
# state of every run and OpenLineage event) is not locked at all, and two writers changing the
# same addresses lock them in the same order. (ON CONFLICT DO UPDATE ... WHERE would lock every
# conflicting row even when its WHERE is false.) Each spec is taken once per name, the last one
# given winning.
ENSURE_SQL = text("""
WITH given AS (
    SELECT s.*, e.n
    FROM jsonb_array_elements(CAST(:specs AS jsonb)) WITH ORDINALITY AS e(spec, n),
    jsonb_to_record(e.spec) AS s(
        name text, address_type_name text, address_type_group_name text, database_name text,
        schema_name text, table_name text, primary_key text, address_metadata jsonb)
),
spec AS (SELECT DISTINCT ON (name) * FROM given ORDER BY name, n DESC),
new_types AS (
    INSERT INTO address_type (name, group_name)
    SELECT DISTINCT ON (address_type_name) address_type_name, address_type_group_name FROM spec
    ON CONFLICT (name) DO NOTHING RETURNING id, name
),
types AS (
    SELECT id, name FROM new_types
    UNION ALL SELECT t.id, t.name FROM address_type t JOIN spec s ON s.address_type_name = t.name
),
wanted AS (
    SELECT s.*, t.id AS type_id FROM spec s JOIN (SELECT DISTINCT id, name FROM types) t
    ON t.name = s.address_type_name
),
changed AS (
    SELECT a.id FROM address a JOIN wanted w ON w.name = a.name
    WHERE (a.address_type_id, a.database_name, a.schema_name, a.table_name, a.primary_key,
           a.address_metadata)
        IS DISTINCT FROM (w.type_id, COALESCE(w.database_name, a.database_name),
           COALESCE(w.schema_name, a.schema_name), COALESCE(w.table_name, a.table_name),
           COALESCE(w.primary_key, a.primary_key),
           COALESCE(w.address_metadata, a.address_metadata))
    ORDER BY a.name
    FOR NO KEY UPDATE OF a
),
updated AS (
    UPDATE address a SET address_type_id = w.type_id,
        database_name = COALESCE(w.database_name, a.database_name),
        schema_name = COALESCE(w.schema_name, a.schema_name),
        table_name = COALESCE(w.table_name, a.table_name),
        primary_key = COALESCE(w.primary_key, a.primary_key),
        address_metadata = COALESCE(w.address_metadata, a.address_metadata),
        updated_at = COALESCE(CAST(:now AS timestamptz), now())
    FROM wanted w WHERE a.id IN (SELECT id FROM changed) AND w.name = a.name
    RETURNING a.id, a.name
),
new_addresses AS (
    INSERT INTO address (name, address_type_id, database_name, schema_name, table_name,
                         primary_key, address_metadata)
    SELECT w.name, w.type_id, w.database_name, w.schema_name, w.table_name, w.primary_key,
           w.address_metadata
    FROM wanted w ORDER BY w.name
    ON CONFLICT (name) DO NOTHING RETURNING id, name
)
SELECT id, name FROM new_addresses
UNION SELECT id, name FROM updated
UNION SELECT a.id, a.name FROM address a JOIN spec s ON s.name = a.name
""").bindparams(bindparam("specs", type_=JSONB))


async def ensure(
    conn: AsyncConnection, specs: list[AddressSpec], now: datetime | None = None
) -> dict[str, int]:
    """Create missing address types and addresses, and update the addresses whose type, parts,
    primary key or metadata changed, in one statement; name → id. Fields a spec leaves out
    (None) keep their stored values."""
    if not specs:
        return {}
    payload = [s.model_dump() for s in specs]
    params = {"specs": payload, "now": now}
    ids: dict[str, int] = {}
    for _ in range(2):  # a row created concurrently is invisible to our snapshot: look again
        rows = await conn.execute(ENSURE_SQL, params)
        ids |= {r.name: r.id for r in rows}
        if all(s.name in ids for s in specs):
            return ids
    missing = sorted({s.name for s in specs} - ids.keys())
    raise RuntimeError(f"addresses not created: {missing}")


@router.post(
    "/address_type", scope="ingest", body=AddressTypeCreate, response=AddressType, status_code=201
)
async def create_address_type(request: Request, body: AddressTypeCreate) -> Reply:
    """Create an address type, or return the existing one of that name (200)."""
    async with transaction(services_of(request).engine) as conn:
        row, created = await crud.create_or_get(conn, address_type, body.model_dump())
    return Reply(row, 201 if created else 200)


@router.get("/address_type", query=crud.Page, response=list[AddressType])
async def list_address_types(request: Request, query: crud.Page) -> list[dict[str, Any]]:
    """List address types (paged)."""
    async with transaction(services_of(request).engine) as conn:
        return await crud.list_rows(conn, address_type, query)


@router.get("/address_type/{id:int}", response=AddressType)
async def get_address_type(request: Request) -> dict[str, Any]:
    """One address type."""
    async with transaction(services_of(request).engine) as conn:
        return await crud.get_by_id(conn, address_type, path_id(request), "address type")


@router.patch("/address_type", body=AddressTypePatch, response=AddressType)
async def patch_address_type(request: Request, body: AddressTypePatch) -> dict[str, Any]:
    """Update an address type found by id or name."""
    services = services_of(request)
    async with transaction(services.engine) as conn:
        return await crud.patch(
            conn, address_type, body, body.changes(), services.clock.now(), "address type"
        )


@router.post("/address", scope="ingest", body=AddressSpec, response=Address, status_code=201)
async def create_address(request: Request, body: AddressSpec) -> Reply:
    """Create an address (and its type when missing), or update the existing one of that name
    whose type, parts, primary key or metadata changed and return it (200)."""
    services = services_of(request)
    async with transaction(services.engine) as conn:
        before = (
            await conn.execute(text("SELECT id FROM address WHERE name = :n"), {"n": body.name})
        ).scalar()
        ids = await ensure(conn, [body], services.clock.now())
        row = await crud.get_by_id(conn, address, ids[body.name], "address")
    return Reply(row, 200 if before is not None else 201)


@router.get("/address", query=crud.Page, response=list[Address])
async def list_addresses(request: Request, query: crud.Page) -> list[dict[str, Any]]:
    """List addresses (paged)."""
    async with transaction(services_of(request).engine) as conn:
        return await crud.list_rows(conn, address, query)


@router.get("/address/{id:int}", response=Address)
async def get_address(request: Request) -> dict[str, Any]:
    """One address."""
    async with transaction(services_of(request).engine) as conn:
        return await crud.get_by_id(conn, address, path_id(request), "address")


@router.patch("/address", body=AddressPatch, response=Address)
async def patch_address(request: Request, body: AddressPatch) -> dict[str, Any]:
    """Update an address found by id or name."""
    services = services_of(request)
    changes = body.changes()
    async with transaction(services.engine) as conn:
        type_name = changes.pop("address_type_name", None)
        if type_name is not None:
            changes["address_type_id"] = await crud.id_by_name(
                conn, address_type, type_name, ["body", "address_type_name"]
            )
        return await crud.patch(conn, address, body, changes, services.clock.now(), "address")
