"""The database engine, and how its failures look to the rest of Watcher."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import asyncpg
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from watcher.config import Settings
from watcher.errors import Busy, Unavailable


def async_url(url: str) -> str:
    """`postgresql://…` → `postgresql+asyncpg://…` (any driver suffix is replaced)."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def create_engine(url: str, settings: Settings) -> AsyncEngine:
    return create_async_engine(
        async_url(url),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_seconds,
        pool_recycle=1800,
        connect_args={
            "timeout": settings.db_connect_timeout_seconds,
            "command_timeout": settings.db_statement_timeout_ms / 1000 + 5,
            "server_settings": {
                "application_name": "watcher",
                "statement_timeout": str(settings.db_statement_timeout_ms),
                "idle_in_transaction_session_timeout": "60000",
            },
        },
    )


_OUTAGE_SQLSTATES = {
    "57P01",  # admin_shutdown
    "57P02",  # crash_shutdown
    "57P03",  # cannot_connect_now (starting up / shutting down)
    "08000",
    "08003",
    "08006",
    "08001",
    "08004",
}
# Reachable, but the statement was cancelled or rolled back for a reason that passes: the same
# request may well succeed a moment later, so these are 503 + Retry-After too, not 500.
_TRANSIENT_SQLSTATES = {
    "57014",  # query_canceled: statement_timeout (or lock wait beyond it)
    "40P01",  # deadlock_detected
    "40001",  # serialization_failure
    "55P03",  # lock_not_available (lock_timeout, NOWAIT)
}
# Up and answering, but out of capacity: PostgreSQL refuses more sessions (max_connections,
# or a role/database connection limit). Busy, like an exhausted pool — not an outage.
_SATURATED_SQLSTATES = {
    "53300",  # too_many_connections
}
BUSY_MESSAGE = "busy: every database connection is in use, retry later"


def _chain(error: BaseException) -> Iterator[BaseException]:
    """`error`, then what it wraps: SQLAlchemy's `.orig`, then causes and contexts."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__


def sqlstate(error: BaseException) -> str | None:
    """The PostgreSQL SQLSTATE somewhere in `error`'s chain, or None."""
    return next((s for e in _chain(error) if (s := getattr(e, "sqlstate", None))), None)


def constraint_name(error: BaseException) -> str | None:
    """The name of the constraint that refused the statement, somewhere in `error`'s chain."""
    return next((n for e in _chain(error) if (n := getattr(e, "constraint_name", None))), None)


def is_saturated(error: BaseException) -> bool:
    """True when `error` means "no connection free for now": the pool stayed exhausted for
    `db_pool_timeout_seconds` (every connection busy with other requests, a burst), or
    PostgreSQL refused another session (too_many_connections). The database is fine; the
    request was queued as long as allowed and may be retried. Never an outage: nothing is
    invalidated, and the answer says "busy", not "unavailable"."""
    for current in _chain(error):
        if isinstance(current, sa_exc.TimeoutError):  # QueuePool: waited pool_timeout
            return True
        if isinstance(current, asyncpg.exceptions.TooManyConnectionsError):
            return True
        if getattr(current, "sqlstate", None) in _SATURATED_SQLSTATES:
            return True
    return False


def is_outage(error: BaseException) -> bool:
    """True when `error` means "the database is unreachable", as opposed to a bad statement
    or a saturated pool (`is_saturated`)."""
    if is_saturated(error):
        return False
    for current in _chain(error):
        if isinstance(current, sa_exc.DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(
            current,
            asyncpg.exceptions.ConnectionDoesNotExistError
            | asyncpg.exceptions.CannotConnectNowError
            | asyncpg.exceptions.InterfaceError
            # A pooled connection that PostgreSQL's shutdown notice reached while idle is left
            # mid-error ("cannot switch to state 12; another operation (2) is in progress"):
            # unusable, so treated like a dropped one (invalidated, 503, the client retries).
            | asyncpg.exceptions.InternalClientError
            | ConnectionError
            | socket.gaierror
            | TimeoutError
            | asyncio.TimeoutError,
        ):
            return True
        if isinstance(current, OSError):
            return True
        if getattr(current, "sqlstate", None) in _OUTAGE_SQLSTATES:
            return True
    return False


def is_transient(error: BaseException) -> bool:
    """True when `error` is an outage, a saturated pool, or a statement cancelled for now
    (statement timeout, deadlock, serialization failure, lock not available): retrying
    later may succeed.

    Kept apart from `is_outage`, which means "unreachable" only: a timed-out statement says
    nothing about the connection, which stays in the pool."""
    return unavailable(error) is not None


def unavailable(error: BaseException) -> Unavailable | None:
    """The 503 for a transient `error` (the reason in words, never the SQL), or None."""
    if is_saturated(error):
        return Busy(BUSY_MESSAGE)
    if is_outage(error):
        return Unavailable("database unavailable, retry later")
    if sqlstate(error) in _TRANSIENT_SQLSTATES:
        return Unavailable("database busy (statement timeout or lock conflict), retry later")
    return None


def is_data_error(error: BaseException) -> bool:
    """A value PostgreSQL refused (SQLSTATE class 22: out of range, invalid text…)."""
    state = sqlstate(error)
    return isinstance(error, sa_exc.DataError) or (state is not None and state.startswith("22"))


def is_integrity_error(error: BaseException) -> bool:
    """A constraint PostgreSQL enforced (SQLSTATE class 23: unique, foreign key, check…)."""
    state = sqlstate(error)
    return isinstance(error, sa_exc.IntegrityError) or (
        state is not None and state.startswith("23")
    )


@asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """One transaction, committed on success; an outage or a transient failure (see
    `is_transient`) surfaces as `Unavailable`."""
    try:
        async with engine.begin() as conn:
            yield conn
    except Exception as error:
        if (busy := unavailable(error)) is not None:
            raise busy from error
        raise
