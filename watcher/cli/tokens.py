"""`watcher tokens create/list/revoke`: API token management straight on the database.

No token is needed (this is how the first admin token is made); like `watcher migrate`, the
embedded PostgreSQL in WATCHER_DATA_DIR is used unless WATCHER_DATABASE_URL is set.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from watcher import auth
from watcher.cli.database import database_url
from watcher.clock import Clock
from watcher.config import load_settings
from watcher.db.engine import create_engine

T = TypeVar("T")


def _on_database(fn: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    from watcher.db import migrate

    settings = load_settings()
    url, embedded = database_url(settings)
    try:
        migrate.upgrade(url)

        async def go() -> T:
            engine = create_engine(url, settings)
            try:
                async with engine.begin() as conn:
                    return await fn(conn)
            finally:
                await engine.dispose()

        return asyncio.run(go())
    finally:
        if embedded is not None:
            embedded.stop()


def cmd_create(args: argparse.Namespace) -> int:
    scopes: list[str] = args.scope or ["ingest"]
    token_id, token = _on_database(
        lambda conn: auth.create_token(conn, args.name, scopes, Clock().now())
    )
    print(f"token {token_id} ({args.name}, scopes: {', '.join(sorted(set(scopes)))}):")
    print(token)
    print("Store it now: it is not shown again.", file=sys.stderr)
    return 0


def _format(row: dict[str, Any]) -> str:
    def when(value: Any) -> str:
        return value.isoformat(timespec="seconds") if value is not None else "-"

    return (
        f"{row['id']:>5}  {row['name']:<24} {','.join(row['scopes']):<18} "
        f"{when(row['created_at']):<26} {when(row['last_used_at']):<26} {when(row['revoked_at'])}"
    )


def cmd_list(args: argparse.Namespace) -> int:
    rows = _on_database(auth.list_tokens)
    print(f"{'id':>5}  {'name':<24} {'scopes':<18} {'created':<26} {'last used':<26} revoked")
    for row in rows:
        print(_format(row))
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    revoked = _on_database(lambda conn: auth.revoke_token(conn, args.id, Clock().now()))
    if not revoked:
        print(f"watcher: no live token with id {args.id}", file=sys.stderr)
        return 1
    print(f"token {args.id} revoked (refused everywhere within {auth.CACHE_SECONDS:g} s)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    tokens = sub.add_parser("tokens", help="create, list and revoke API tokens")
    actions = tokens.add_subparsers(dest="tokens_command", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="create a token and print it once")
    create.add_argument("name", help="who or what uses the token")
    create.add_argument(
        "--scope",
        action="append",
        choices=auth.SCOPES,
        help="read, ingest or admin (repeatable; default ingest; admin implies all)",
    )
    create.set_defaults(func=cmd_create)
    actions.add_parser("list", help="list tokens (never the tokens themselves)").set_defaults(
        func=cmd_list
    )
    revoke = actions.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("id", type=int)
    revoke.set_defaults(func=cmd_revoke)
