"""Row operations shared by the named entities (types, pipelines, addresses, rules).

Each is one statement; the caller's transaction commits. Rows come back as plain dicts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field, model_validator
from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from watcher.db.engine import constraint_name, sqlstate
from watcher.errors import Conflict, InvalidInput, NotFound
from watcher.fields import RULE_PAIRS, Body, Id, Name

UNIQUE_VIOLATION = "23505"
CHECK_VIOLATION = "23514"


class Page(Body):
    limit: int = Field(default=100, ge=1, le=1000)
    offset: int = Field(default=0, ge=0, le=2**31)


class ByIdOrName(Body):
    """PATCH bodies name their row by `id` or by `name`. With both, `id` finds the row and
    `name` renames it: the original Watcher's PATCH takes a required `id` and `name` as one of
    the fields it updates, so `{"id": 3, "name": "new"}` must rename, not be refused."""

    id: Id | None = None
    name: Name | None = None

    @model_validator(mode="after")
    def _one_key(self) -> ByIdOrName:
        if self.id is None and self.name is None:
            raise ValueError("give id or name")
        return self

    @property
    def renames(self) -> bool:
        return self.id is not None and self.name is not None

    def changes(self) -> dict[str, Any]:
        """The fields the caller set, except the key (and `name` unless it is a rename)."""
        keys = {"id"} if self.renames else {"id", "name"}
        return {k: getattr(self, k) for k in self.model_fields_set - keys}


def row_dict(row: Any) -> dict[str, Any]:
    return dict(row._mapping)


async def get_by_id(conn: AsyncConnection, table: Table, id_: int, what: str) -> dict[str, Any]:
    row = (await conn.execute(select(table).where(table.c.id == id_))).first()
    if row is None:
        raise NotFound(f"{what} {id_} not found")
    return row_dict(row)


async def list_rows(conn: AsyncConnection, table: Table, page: Page) -> list[dict[str, Any]]:
    query = select(table).order_by(table.c.id).limit(page.limit).offset(page.offset)
    return [row_dict(r) for r in await conn.execute(query)]


async def create_or_get(
    conn: AsyncConnection, table: Table, values: dict[str, Any]
) -> tuple[dict[str, Any], bool]:
    """Insert by unique name, or return the existing row. (row, created)."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    statement = pg_insert(table).values(**values).on_conflict_do_nothing(index_elements=["name"])
    row = (await conn.execute(statement.returning(table))).first()
    if row is not None:
        return row_dict(row), True
    row = (await conn.execute(select(table).where(table.c.name == values["name"]))).first()
    if row is None:  # deleted between the two statements: vanishingly rare, but honest
        row = (await conn.execute(insert(table).values(**values).returning(table))).one()
        return row_dict(row), True
    return row_dict(row), False


async def patch(
    conn: AsyncConnection,
    table: Table,
    key: ByIdOrName,
    changes: dict[str, Any],
    now: datetime,
    what: str,
) -> dict[str, Any]:
    where = table.c.id == key.id if key.id is not None else table.c.name == key.name
    if "updated_at" in table.c:
        changes = {**changes, "updated_at": now}
    if not changes:
        row = (await conn.execute(select(table).where(where))).first()
    else:
        statement = update(table).where(where).values(**changes).returning(table)
        try:
            row = (await conn.execute(statement)).first()
        except IntegrityError as error:
            if sqlstate(error) == CHECK_VIOLATION and (
                half := _incomplete_pair(table, error, changes)
            ):
                given, missing = half
                raise InvalidInput.field(
                    ["body", missing],
                    f"required with {given}: this {what} has no stored {missing}"
                    f" ({given} and {missing} are set or cleared together)",
                ) from None
            if "name" in changes and sqlstate(error) == UNIQUE_VIOLATION:
                raise Conflict(
                    f"{what} named {changes['name']!r} already exists",
                    [{"loc": ["body", "name"], "msg": "already taken by another row"}],
                ) from None
            raise
    if row is None:
        label = key.id if key.id is not None else repr(key.name)
        raise NotFound(f"{what} {label} not found")
    return row_dict(row)


def _incomplete_pair(
    table: Table, error: BaseException, changes: dict[str, Any]
) -> tuple[str, str] | None:
    """(given half, missing half) when `error` is a rule pair's check (`ck_<table>_<rule>_pair`):
    a PATCH gave one half and the stored other half is not set (or the reverse: cleared one
    half of a stored pair)."""
    name = constraint_name(error) or ""
    for rule, (number, datepart) in RULE_PAIRS.items():
        if name == f"ck_{table.name}_{rule}_pair":
            return (number, datepart) if number in changes else (datepart, number)
    return None


async def id_by_name(conn: AsyncConnection, table: Table, name: str, loc: list[str | int]) -> int:
    found = (await conn.execute(select(table.c.id).where(table.c.name == name))).scalar()
    if found is None:
        raise InvalidInput.field(loc, f"{name!r} does not exist")
    return int(found)


async def count(conn: AsyncConnection, table: Table) -> int:
    return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())
