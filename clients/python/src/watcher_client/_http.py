"""What the sync and async clients share: settings, retry decisions, encoding, error mapping.

Nothing here does I/O; the clients call these around their one `request` chokepoint.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from watcher_client._errors import (
    APIError,
    InvalidResponse,
    WatcherError,
    WatcherUnavailable,
    error_for_status,
)
from watcher_client._models import Watermark

# A JSON object, or an array of them (the OpenLineage batch).
Body = Mapping[str, Any] | Sequence[Mapping[str, Any]]

DEFAULT_URL = "http://127.0.0.1:8000"
# A short connect timeout: an unreachable Watcher should cost a pipeline seconds, not minutes.
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


@dataclass(frozen=True)
class Settings:
    """Where and how to reach Watcher. `from_env` is the only place the environment is read."""

    base_url: str = DEFAULT_URL
    token: str | None = None
    timeout: httpx.Timeout = field(default_factory=lambda: DEFAULT_TIMEOUT)

    @classmethod
    def resolve(
        cls,
        base_url: str | None,
        token: str | None,
        timeout: float | httpx.Timeout | None,
        env: Mapping[str, str],
    ) -> Settings:
        return cls(
            base_url=(base_url or env.get("WATCHER_URL") or DEFAULT_URL).rstrip("/"),
            token=token or env.get("WATCHER_TOKEN") or None,
            timeout=DEFAULT_TIMEOUT if timeout is None else httpx.Timeout(timeout),
        )

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "watcher-client"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter; `Retry-After` wins when the server sends it.

    Attempt n (0-based) sleeps uniform(0, min(max_backoff, backoff * 2**n)). A Retry-After
    longer than `max_backoff` is not shortened: the client gives up and raises instead.
    """

    retries: int = 3
    backoff: float = 0.5
    max_backoff: float = 30.0
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def delay(self, attempt: int, error: WatcherError) -> float | None:
        """Seconds to wait before retrying after `error`, or None to give up."""
        if attempt >= self.retries or not error.retryable:
            return None
        if error.retry_after is not None:
            return error.retry_after if error.retry_after <= self.max_backoff else None
        return self.rng.uniform(0, min(self.max_backoff, self.backoff * 2**attempt))


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - now).total_seconds())


# Everything httpx raises for a request that got no usable answer. `InvalidURL` is not an
# `HTTPError` (a base URL httpx cannot parse), yet it must fail open like the rest.
REQUEST_ERRORS = (httpx.HTTPError, httpx.InvalidURL)


def request_error(exc: httpx.HTTPError | httpx.InvalidURL) -> WatcherError:
    """The client's error for an exception httpx raised instead of returning a response.

    Transport errors (refused, reset, timeout) may be transient and are retried. A body that
    cannot be decoded or a redirect loop is an answer, just not the one the contract promises
    (`InvalidResponse`); a URL httpx cannot speak will never work. Neither is retried.
    """
    error: WatcherError
    if isinstance(exc, httpx.TransportError):
        error = WatcherUnavailable(f"{type(exc).__name__}: {exc or 'no detail'}")
        # A scheme httpx cannot speak will never work; everything else may be transient.
        error.retryable = not isinstance(exc, httpx.UnsupportedProtocol)
    elif isinstance(exc, httpx.DecodingError | httpx.TooManyRedirects):
        error = InvalidResponse(f"{type(exc).__name__}: {exc or 'no detail'}")
    else:
        error = WatcherUnavailable(f"{type(exc).__name__}: {exc or 'no detail'}")
        error.retryable = False
    error.__cause__ = exc
    return error


def response_error(response: httpx.Response) -> WatcherError:
    detail, errors = response.reason_phrase or "error", None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        detail = str(body.get("detail", detail))
        errors = body.get("errors") if isinstance(body.get("errors"), list) else None
    retry_after = parse_retry_after(response.headers.get("Retry-After"), datetime.now(UTC))
    error = error_for_status(response.status_code, detail, errors, retry_after)
    error.body = body
    return error


def partial_batch(error: APIError) -> Any:
    """An OpenLineage batch with rejected events is answered 422 with a result per event:
    that is an answer (the other events were stored), returned rather than raised."""
    if isinstance(error.body, dict) and isinstance(error.body.get("results"), list):
        return error.body
    raise error


def decode(response: httpx.Response) -> Any:
    if response.status_code == 204 or not response.content:
        return None
    try:
        return response.json()
    except ValueError as exc:
        raise InvalidResponse(f"{response.status_code}: body is not JSON") from exc


def encode(body: Body) -> bytes:
    return json.dumps(body, default=_jsonable, separators=(",", ":")).encode()


def _jsonable(value: object) -> Any:
    # Dates as ISO 8601; anything else (Decimal, UUID, a Path in run.metadata) as its text, so
    # an odd metadata value can never be the reason a pipeline's run goes unrecorded.
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def watermark_text(value: Watermark | None) -> str | None:
    """Watcher stores watermarks as text; dates go as ISO 8601 so they sort as text too."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def query(params: Mapping[str, Any]) -> dict[str, str | int | float | bool]:
    """Query parameters that were given, datetimes as ISO 8601."""
    return {
        key: value.isoformat() if isinstance(value, datetime | date) else value
        for key, value in params.items()
        if value is not None
    }


def compact(**fields: Any) -> dict[str, Any]:
    """The fields that were given: None means 'not given' for optional arguments."""
    return {key: value for key, value in fields.items() if value is not None}


def watermarks_as_text(body: dict[str, Any]) -> dict[str, Any]:
    for key in ("watermark", "next_watermark"):
        if key in body:
            body[key] = watermark_text(body[key])
    return body


def pipeline_body(name: str, pipeline_type_name: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    return watermarks_as_text({"name": name, "pipeline_type_name": pipeline_type_name, **fields})


def start_body(
    pipeline_id: int | None,
    pipeline_name: str | None,
    start_date: datetime | None,
    parent_id: int | None,
    watermark: Watermark | None,
    next_watermark: Watermark | None,
    run_id: str,
) -> dict[str, Any]:
    if (pipeline_id is None) == (pipeline_name is None):
        raise ValueError("give exactly one of pipeline_id and pipeline_name")
    return compact(
        pipeline_id=pipeline_id,
        pipeline_name=pipeline_name,
        start_date=start_date,
        parent_id=parent_id,
        watermark=watermark_text(watermark),
        next_watermark=watermark_text(next_watermark),
        run_id=run_id,
    )
