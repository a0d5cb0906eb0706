"""Watcher's exceptions. Domain code raises these; only the HTTP layer maps them to statuses.

WatcherError
 ├── InvalidInput        422  a field is wrong (carries [{"loc": [...], "msg": ...}])
 ├── NotFound            404  an id or name that does not exist
 ├── Conflict            409  the request contradicts stored state
 ├── Unauthorized        401  no or unknown token
 ├── Forbidden           403  token lacks the scope
 ├── PayloadTooLarge     413  body over the limit
 └── Unavailable         503  the database cannot be reached (sent with Retry-After)
      └── Busy           503  reachable, but every connection is in use (a burst): retry
"""

from __future__ import annotations

from typing import Any, TypedDict


class ErrorItem(TypedDict):
    loc: list[str | int]
    msg: str


class WatcherError(Exception):
    status_code = 500

    def __init__(self, detail: str, errors: list[ErrorItem] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []

    def body(self) -> dict[str, Any]:
        return {"detail": self.detail, "errors": self.errors}


class InvalidInput(WatcherError):
    status_code = 422

    @classmethod
    def field(cls, loc: list[str | int], msg: str) -> InvalidInput:
        return cls(f"{'.'.join(map(str, loc))}: {msg}", [{"loc": loc, "msg": msg}])


class NotFound(WatcherError):
    status_code = 404


class Conflict(WatcherError):
    status_code = 409


class Unauthorized(WatcherError):
    status_code = 401


class Forbidden(WatcherError):
    status_code = 403


class PayloadTooLarge(WatcherError):
    status_code = 413


class Unavailable(WatcherError):
    status_code = 503


class Busy(Unavailable):
    """Out of capacity for now (pool exhausted after queueing, too many connections): the
    database is fine and the same request will succeed later. 503 with Retry-After."""
