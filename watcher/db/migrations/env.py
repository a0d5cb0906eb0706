"""Alembic environment (async, asyncpg). The URL comes from `watcher.db.migrate` or Settings.

Online runs hold the advisory lock `watcher.db.locks.MIGRATION` for their whole run.
"""

from __future__ import annotations

import asyncio
import logging

from alembic import context
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from watcher.db import locks
from watcher.db.engine import async_url
from watcher.db.migrate import LOCK_POLL_SECONDS
from watcher.db.schema import metadata

config = context.config
target_metadata = metadata
log = logging.getLogger("watcher.db.migrate")

_TRY_LOCK = text("SELECT pg_try_advisory_lock(:key)")
_UNLOCK = text("SELECT pg_advisory_unlock(:key)")


def _url() -> str:
    url = config.attributes.get("url")
    if url is None:
        from watcher.config import load_settings

        settings = load_settings()
        if settings.database_url is None:
            raise SystemExit("set WATCHER_DATABASE_URL, or use `watcher migrate`")
        url = settings.database_url.get_secret_value()
    return async_url(url)


def _configure(connection: Connection | None = None, url: str | None = None) -> None:
    context.configure(
        connection=connection,
        url=url,
        target_metadata=target_metadata,
        compare_type=True,
        compare_server_default=False,
        transaction_per_migration=True,
    )


def run_migrations_offline() -> None:
    _configure(url=_url())
    with context.begin_transaction():
        context.run_migrations()


def _run_sync(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


async def _lock(connection: AsyncConnection) -> None:
    """Take locks.MIGRATION for this session, so replicas starting together on a fresh
    database migrate one after the other (the later one then finds nothing to do).

    Polled with pg_try_advisory_lock, each try in its own short transaction: a waiter blocked
    in pg_advisory_lock would hold a snapshot, and CREATE INDEX CONCURRENTLY (0003) in the
    migrating session waits for every older snapshot — a deadlock PostgreSQL breaks by
    failing one of them.
    """
    waiting = False
    while True:
        taken = (await connection.execute(_TRY_LOCK, {"key": locks.MIGRATION})).scalar()
        await connection.commit()
        if taken:
            return
        if not waiting:
            log.info("another process is migrating this database; waiting for it")
            waiting = True
        await asyncio.sleep(LOCK_POLL_SECONDS)


async def _unlock(connection: AsyncConnection) -> None:
    try:
        await connection.rollback()  # a failed migration's transaction, if any
        await connection.execute(_UNLOCK, {"key": locks.MIGRATION})
        await connection.commit()
    except sa_exc.DBAPIError:
        pass  # the connection is gone, and the session's lock with it


async def run_migrations_online() -> None:
    engine = create_async_engine(_url())
    try:
        async with engine.connect() as connection:
            await _lock(connection)
            try:
                await connection.run_sync(_run_sync)
                await connection.commit()
            finally:
                await _unlock(connection)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
