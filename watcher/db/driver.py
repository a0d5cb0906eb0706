"""Statements of the ingestion path, run on the driver directly or through SQLAlchemy.

The three requests every pipeline run makes (create-or-get pipeline, start, end) are one
statement each. Through SQLAlchemy's `AsyncConnection` a statement costs ~120 µs of CPU
(greenlet hop, compiled-cache lookup, parameter and result processing) against ~40 µs on
the asyncpg connection itself — a fifth of the server's CPU per run. So a `Statement` is
compiled once, at import, into asyncpg's `$n` form, and the routes run it on the raw
connection of a pooled SQLAlchemy connection (same pool, same limits, same outage
handling). The same `Statement` runs through SQLAlchemy when the caller is inside a
larger transaction (OpenLineage ingestion writes several rows atomically): `session()`
picks the path from the connection it is given.

    async with raw_autocommit(engine) as db:      # every statement commits on its own
        row = await db.fetchrow(START, params)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Protocol, cast

import asyncpg
import orjson
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.util import greenlet_spawn

from watcher.db.engine import is_outage, unavailable

Row = Mapping[str, Any]


class Statement:
    """A statement (text with `:name` parameters, or Core), also compiled to asyncpg's form."""

    def __init__(self, clause: Executable) -> None:
        self.clause = clause
        dialect = PGDialect_asyncpg()  # type: ignore[no-untyped-call]
        compiled = cast(SQLCompiler, cast(ClauseElement, clause).compile(dialect=dialect))
        self.sql = str(compiled)
        self.names: tuple[str, ...] = tuple(compiled.positiontup or ())
        # Values Core put in the statement itself (`.limit(1)` is `LIMIT $1`).
        self._defaults = {
            name: bind.effective_value
            for name, bind in compiled.binds.items()
            if bind.effective_value is not None
        }
        # JSONB parameters go to the driver as JSON text (SQLAlchemy serialises them itself).
        self._json = frozenset(
            name for name, bind in compiled.binds.items() if isinstance(bind.type, JSONB)
        )

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        """The positional arguments for `self.sql`; absent parameters are NULL."""
        defaults = self._defaults
        values = [params.get(name, defaults.get(name)) for name in self.names]
        if self._json:
            for i, name in enumerate(self.names):
                if name in self._json and values[i] is not None:
                    values[i] = orjson.dumps(values[i]).decode()
        return values


class ConstraintViolated(Exception):
    """An integrity constraint refused the statement; `constraint` names it when known."""

    def __init__(self, constraint: str | None) -> None:
        super().__init__(constraint or "constraint violated")
        self.constraint = constraint


class Session(Protocol):
    async def fetchrow(self, statement: Statement, params: Mapping[str, Any]) -> Row | None: ...


class DriverSession:
    """Statements on an asyncpg connection outside any transaction: each commits alone."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def fetchrow(self, statement: Statement, params: Mapping[str, Any]) -> Row | None:
        try:
            row: Row | None = await self.conn.fetchrow(statement.sql, *statement.args(params))
            return row
        except asyncpg.IntegrityConstraintViolationError as error:
            raise ConstraintViolated(getattr(error, "constraint_name", None)) from error

    async def fetch(
        self, statement: Statement, params: Mapping[str, Any] | None = None
    ) -> list[Any]:
        """Every row at once (the driver builds them in C; SQLAlchemy's async cursor fetches
        and wraps one row at a time, most of the time a large read spends)."""
        rows: list[Any] = await self.conn.fetch(statement.sql, *statement.args(params or {}))
        return rows


class AlchemySession:
    """Statements through a SQLAlchemy connection, inside whatever transaction it has."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def fetchrow(self, statement: Statement, params: Mapping[str, Any]) -> Row | None:
        try:
            row = (await self.conn.execute(statement.clause, dict(params))).first()
        except IntegrityError as error:
            raise ConstraintViolated(_constraint_name(error)) from error
        return None if row is None else cast(Row, row._mapping)


def _constraint_name(error: BaseException) -> str | None:
    current: BaseException | None = error
    while current is not None:
        name = getattr(current, "constraint_name", None)
        if name:
            return str(name)
        current = getattr(current, "orig", None) or current.__cause__
    return None


def session(conn: AsyncConnection | Session) -> Session:
    """`conn` as a Session: a SQLAlchemy connection keeps its transaction."""
    return AlchemySession(conn) if isinstance(conn, AsyncConnection) else conn


@asynccontextmanager
async def raw_autocommit(engine: AsyncEngine) -> AsyncIterator[DriverSession]:
    """A pooled connection's asyncpg connection, every statement committing on its own.

    For routes whose write is one statement (atomic by itself: the ingestion path's CTEs);
    it saves the BEGIN and COMMIT round trips, two of three per request. Outages and
    transient failures surface as `Unavailable` (as in `watcher.db.engine.transaction`), and a
    connection that failed by an outage is invalidated, not pooled again.
    """
    try:
        fairy = await engine.raw_connection()
    except Exception as error:
        if (busy := unavailable(error)) is not None:
            raise busy from error
        raise
    try:
        yield DriverSession(fairy.driver_connection)
    except Exception as error:
        if is_outage(error):
            await greenlet_spawn(fairy.invalidate, error)
        if (busy := unavailable(error)) is not None:
            raise busy from error
        raise
    finally:
        await greenlet_spawn(fairy.close)
