"""Bearer API tokens with scopes: the authorizer behind `Operation.endpoint`.

Scopes:
- `read`   GET routes and `/metrics`;
- `ingest` create-or-get pipeline, start/end executions, lineage, OpenLineage;
- `admin`  everything (PATCH, rules, checks, cleanup) — it implies `read` and `ingest`.
`ingest` does not imply `read`: a pipeline's token can report runs but not browse the
catalogue. Give a token both scopes when it needs both.

Tokens are `wt_` + 43 random URL-safe characters, shown once by `watcher tokens create`;
only their sha256 is stored. A request's token is hashed, looked up by hash, and the stored
hash is compared with `hmac.compare_digest`, so timing reveals nothing about a token.

Lookups are cached in-process for `CACHE_SECONDS` (5 s): a revoked token stops working on
every replica within 5 seconds. `last_used_at` is written at most once a minute per token
and per replica, never on every request.

While PostgreSQL is unavailable, a token the database vouched for within `STALE_SECONDS`
(10 minutes) keeps its last known grant, so Prometheus can still scrape `/metrics` (served
from memory) and `WatcherDown` does not fire for a database outage. The lookup is retried
every `CACHE_SECONDS` meanwhile; the first answer once the database is back wins (a token
revoked meanwhile then stops working). A token never seen, or seen too long ago, gets 503.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request

from watcher.config import Settings
from watcher.db.engine import transaction
from watcher.errors import Forbidden, Unauthorized, Unavailable
from watcher.routing import Router, Scope
from watcher.services import Services

log = logging.getLogger("watcher.auth")

router = Router("auth")  # no routes: tokens are managed with `watcher tokens`

SCOPES = ("read", "ingest", "admin")
TOKEN_PREFIX = "wt_"
CACHE_SECONDS = 5.0
STALE_SECONDS = 600.0
LAST_USED_SECONDS = 60.0
CACHE_MAX = 4096


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def allows(scopes: Iterable[str], required: Scope) -> bool:
    """Whether a token holding `scopes` may use an operation declared with `required`."""
    held = set(scopes)
    return required == "public" or "admin" in held or required in held


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    kind, _, value = header.partition(" ")
    if kind.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


@dataclass(frozen=True, slots=True)
class Grant:
    """What a valid token may do; None in the cache means "no such (live) token"."""

    id: int
    name: str
    scopes: tuple[str, ...]


@dataclass(slots=True)
class _Entry:
    grant: Grant | None
    fetched: float  # when the database last answered for this token
    checked: float  # when it was last asked (a lookup that failed with an outage counts)


LOOKUP = text(
    "SELECT id, name, token_hash, scopes FROM api_token "
    "WHERE token_hash = :h AND revoked_at IS NULL"
)
TOUCH = text("UPDATE api_token SET last_used_at = :now WHERE id = :id")


class TokenAuthorizer:
    """Checks `Authorization: Bearer …` against `api_token`, with a short-lived cache.

    `monotonic` is injectable so tests move time instead of sleeping.
    """

    def __init__(self, services: Services, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._services = services
        self._monotonic = monotonic
        self._cache: dict[str, _Entry] = {}
        self._touched: dict[str, float] = {}

    async def __call__(self, request: Request, scope: Scope) -> None:
        if scope == "public":
            return
        token = bearer(request)
        if token is None:
            raise Unauthorized("missing bearer token")
        grant = await self._grant(hash_token(token))
        if grant is None:
            raise Unauthorized("invalid or revoked token")
        if not allows(grant.scopes, scope):
            raise Forbidden(f"token lacks the {scope!r} scope")
        request.scope["watcher.token"] = grant.name

    async def _grant(self, digest: str) -> Grant | None:
        now = self._monotonic()
        entry = self._cache.get(digest)
        if entry is None or now - entry.checked >= CACHE_SECONDS:
            entry = await self._refresh(digest, entry, now)
        grant = entry.grant
        reachable = entry.fetched == entry.checked  # no use touching a database that is down
        if grant is not None and reachable and self._touch_due(digest, now):
            await self._touch(grant.id)
        return grant

    async def _refresh(self, digest: str, entry: _Entry | None, now: float) -> _Entry:
        try:
            grant = await self._lookup(digest)
        except Unavailable:
            if entry is None or now - entry.fetched >= STALE_SECONDS:
                raise
            if entry.fetched == entry.checked:
                log.warning("database unavailable: serving a token's last known grant")
            entry.checked = now  # ask again in CACHE_SECONDS, not on every request
            return entry
        if len(self._cache) >= CACHE_MAX:
            # bounded: unknown tokens cannot grow memory without limit
            self._cache.clear()
            self._touched.clear()
        entry = self._cache[digest] = _Entry(grant, now, now)
        return entry

    def _touch_due(self, digest: str, now: float) -> bool:
        if now - self._touched.get(digest, -LAST_USED_SECONDS) < LAST_USED_SECONDS:
            return False
        self._touched[digest] = now
        return True

    async def _lookup(self, digest: str) -> Grant | None:
        async with transaction(self._services.engine) as conn:
            row = (await conn.execute(LOOKUP, {"h": digest})).first()
        if row is None or not hmac.compare_digest(row.token_hash, digest):
            return None
        return Grant(row.id, row.name, tuple(row.scopes))

    async def _touch(self, token_id: int) -> None:
        # Best effort: a failed last-used update must not fail the request.
        try:
            async with self._services.engine.begin() as conn:
                await conn.execute(TOUCH, {"now": self._services.clock.now(), "id": token_id})
        except Exception as error:
            log.warning("could not record token use: %s", type(error).__name__)


def setup(services: Services) -> None:
    if services.settings.auth_enabled:
        services.authorizer = TokenAuthorizer(services)


# Token management, shared by the CLI and the tests: plain functions of a connection.


async def create_token(
    conn: AsyncConnection, name: str, scopes: Iterable[str], now: datetime
) -> tuple[int, str]:
    """Store a new token's hash; return (id, token). The token is not recoverable later."""
    wanted = sorted(set(scopes))
    unknown = [s for s in wanted if s not in SCOPES]
    if unknown or not wanted:
        raise ValueError(f"scopes must be among {', '.join(SCOPES)}")
    token = new_token()
    row = await conn.execute(
        text(
            "INSERT INTO api_token (name, token_hash, scopes, created_at) "
            "VALUES (:n, :h, :s, :now) RETURNING id"
        ),
        {"n": name, "h": hash_token(token), "s": wanted, "now": now},
    )
    return int(row.scalar_one()), token


async def list_tokens(conn: AsyncConnection) -> list[dict[str, Any]]:
    rows = await conn.execute(
        text(
            "SELECT id, name, scopes, created_at, last_used_at, revoked_at "
            "FROM api_token ORDER BY id"
        )
    )
    return [dict(r._mapping) for r in rows]


async def revoke_token(conn: AsyncConnection, token_id: int, now: datetime) -> bool:
    """Revoke a token; False when there is no such live token."""
    result = await conn.execute(
        text("UPDATE api_token SET revoked_at = :now WHERE id = :id AND revoked_at IS NULL"),
        {"now": now, "id": token_id},
    )
    return bool(result.rowcount)


async def count_live_tokens(conn: AsyncConnection) -> int:
    result = await conn.execute(text("SELECT count(*) FROM api_token WHERE revoked_at IS NULL"))
    return int(result.scalar_one())


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def insecure_bind_refusal(settings: Settings) -> str | None:
    """Why `serve` must not start with these settings, or None when it may."""
    if settings.auth_enabled or settings.allow_insecure_remote or is_loopback(settings.host):
        return None
    return (
        f"refusing to serve on {settings.host} with authentication disabled; enable it "
        "(WATCHER_AUTH_ENABLED=true) or set WATCHER_ALLOW_INSECURE_REMOTE=true"
    )


FIRST_TOKEN_HINT = (
    "watcher: authentication is on and no API token exists yet. Create the first admin "
    "token with:\n    watcher tokens create admin --scope admin\n"
    "and send it as 'Authorization: Bearer <token>'."
)
