"""The remote commands' side of the wire: `Api` (the shipped client, with progress for long
reads), the shared `--url/--token/--json` options, argument types and name lookups."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from watcher_client import APIError, RetryPolicy, WatcherClient, WatcherError, WatcherUnavailable

from watcher.cli.output import Row, status

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_HTTP = 0, 1, 2, 3
DEFAULT_URL = "http://127.0.0.1:8000"
PAGE = 1000


class ApiError(Exception):
    """Watcher unreachable or an HTTP error: exit code 3."""


class Api:
    """The shipped client (`watcher_client.WatcherClient`) as the commands use it: a call by
    method and path, JSON in and out, every client error as ApiError (exit code 3).

    No retries: a person at a terminal wants the answer (or the error) now."""

    def __init__(self, url: str, token: str | None, timeout: float) -> None:
        self.client = WatcherClient(
            url, token=token, timeout=timeout, retry=RetryPolicy(retries=0), env={}
        )

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        try:
            return self.client.request(method, path, body=json, params=params, retry=False)
        except APIError as error:
            raise ApiError(
                f"HTTP {error.status_code} from {method} {path}: {error.detail}"
            ) from None
        except WatcherUnavailable as error:
            url = self.client.settings.base_url
            raise ApiError(f"cannot reach Watcher at {url}: {error}") from None
        except WatcherError as error:
            raise ApiError(f"{method} {path}: {error}") from None

    def close(self) -> None:
        self.client.close()

    def pages(self, path: str, params: dict[str, Any], limit: int | None) -> Iterator[Row]:
        """Rows of a paged listing, up to `limit` (None: all)."""
        offset = 0
        while limit is None or offset < limit:
            size = PAGE if limit is None else min(PAGE, limit - offset)
            rows = self.call("GET", path, params={**params, "limit": size, "offset": offset})
            yield from rows
            if len(rows) < size:
                return
            offset += size
            status(f"fetched {offset} rows…")


# --- arguments ---------------------------------------------------------------------------

_RELATIVE = re.compile(r"^(\d+)([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def since(value: str) -> datetime:
    """`30m`, `24h`, `7d`, `2w` ago, or an ISO date/datetime (UTC when no zone is given)."""
    relative = _RELATIVE.match(value.strip())
    if relative:
        amount, unit = relative.groups()
        return datetime.now(UTC) - timedelta(**{_UNITS[unit]: int(amount)})
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:
            parsed = datetime.combine(date.fromisoformat(value), time())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{value!r}: expected 30m, 24h, 7d, 2w or an ISO date/datetime"
            ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


MIN_RETENTION_DAYS, MAX_RETENTION_DAYS = 90, 36_500  # the server's bounds


def retention(value: str) -> int:
    """Days of history to keep: checked here too, so a typo never reaches the server."""
    try:
        days = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: expected a number of days") from None
    if not MIN_RETENTION_DAYS <= days <= MAX_RETENTION_DAYS:
        raise argparse.ArgumentTypeError(
            f"{value}: must be between {MIN_RETENTION_DAYS} and {MAX_RETENTION_DAYS} days"
        )
    return days


def positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value}: must be at least 1")
    return number


def common() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("connection and output")
    group.add_argument(
        "--url",
        default=os.environ.get("WATCHER_URL", DEFAULT_URL),
        help=f"Watcher's base URL (env WATCHER_URL, default {DEFAULT_URL})",
    )
    group.add_argument(
        "--token",
        default=os.environ.get("WATCHER_TOKEN"),
        help="API token sent as a bearer token (env WATCHER_TOKEN)",
    )
    group.add_argument("--timeout", type=float, default=300.0, help="seconds (default 300)")
    group.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parent


def api_of(args: argparse.Namespace) -> Api:
    return Api(args.url, args.token, args.timeout)


def resolve(api: Api, path: str, key: str, what: str) -> Row:
    """A row by id (digits) or by its (case-insensitive) name."""
    if key.isdigit():
        return api.call("GET", f"{path}/{key}")  # type: ignore[no-any-return]
    name = key.strip().lower()
    for row in api.pages(path, {}, None):
        if row["name"] == name:
            return row
    raise ApiError(f"no {what} named {name!r}")
