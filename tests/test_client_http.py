"""The client's pure parts: backoff, Retry-After, settings, encoding. No network."""

from __future__ import annotations

import inspect
import json
import random
from datetime import UTC, date, datetime
from decimal import Decimal

import httpx
import pytest
from watcher_client import (
    AsyncWatcherClient,
    RetryPolicy,
    ServiceUnavailable,
    WatcherClient,
    WatcherUnavailable,
)
from watcher_client._errors import ValidationError, error_for_status
from watcher_client._http import Settings, encode, parse_retry_after, watermark_text

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def policy(**kwargs: float) -> RetryPolicy:
    return RetryPolicy(rng=random.Random(7), **kwargs)  # type: ignore[arg-type]


def test_backoff_is_full_jitter_under_an_exponential_cap() -> None:
    retry = policy(retries=10, backoff=0.5, max_backoff=4.0)
    for attempt, cap in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (6, 4.0)]:
        delays = [retry.delay(attempt, WatcherUnavailable("down")) for _ in range(200)]
        assert all(d is not None and 0 <= d <= cap for d in delays)
        assert max(d for d in delays if d is not None) > cap * 0.8  # jitter spans the range


def test_it_gives_up_after_the_configured_retries() -> None:
    retry = policy(retries=2)
    assert retry.delay(1, WatcherUnavailable("down")) is not None
    assert retry.delay(2, WatcherUnavailable("down")) is None


def test_retry_after_is_honoured_exactly() -> None:
    error = error_for_status(503, "database down", retry_after=5.0)
    assert isinstance(error, ServiceUnavailable)
    assert policy().delay(0, error) == 5.0


def test_a_retry_after_beyond_max_backoff_gives_up_instead_of_shortening_it() -> None:
    assert policy(max_backoff=10).delay(0, error_for_status(503, "down", retry_after=60)) is None


def test_client_errors_and_501_are_not_retried() -> None:
    assert policy().delay(0, error_for_status(422, "bad")) is None
    assert policy().delay(0, error_for_status(501, "no")) is None
    assert policy().delay(0, error_for_status(500, "oops")) is not None
    assert policy().delay(0, error_for_status(429, "slow down")) is not None
    assert isinstance(error_for_status(422, "bad"), ValidationError)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        (" 0 ", 0.0),
        ("Thu, 01 Jan 2026 12:00:30 GMT", 30.0),
        ("Thu, 01 Jan 2026 11:00:00 GMT", 0.0),
        ("soon", None),
        (None, None),
    ],
)
def test_it_parses_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, NOW) == seconds


def test_settings_come_from_arguments_then_environment_then_defaults() -> None:
    env = {"WATCHER_URL": "http://watcher.internal:9000/", "WATCHER_TOKEN": "t0k"}
    from_env = Settings.resolve(None, None, None, env)
    assert (from_env.base_url, from_env.token) == ("http://watcher.internal:9000", "t0k")
    assert from_env.headers()["Authorization"] == "Bearer t0k"
    given = Settings.resolve("http://other", "mine", 3, env)
    assert (given.base_url, given.token, given.timeout) == (
        "http://other",
        "mine",
        httpx.Timeout(3),
    )
    default = Settings.resolve(None, None, None, {})
    assert default.base_url == "http://127.0.0.1:8000"
    assert "Authorization" not in default.headers()


def test_watermarks_are_sent_as_text() -> None:
    assert watermark_text(42) == "42"
    assert watermark_text(date(2026, 1, 2)) == "2026-01-02"
    assert watermark_text(NOW) == "2026-01-01T12:00:00+00:00"
    assert watermark_text("abc") == "abc"
    assert watermark_text(None) is None


def test_odd_metadata_values_are_encoded_as_text_not_rejected() -> None:
    body = json.loads(encode({"when": NOW, "amount": Decimal("1.5"), "tags": ("a",)}))
    assert body == {"when": "2026-01-01T12:00:00+00:00", "amount": "1.5", "tags": ["a"]}


def public_methods(cls: type) -> dict[str, inspect.Signature]:
    # getmembers, not vars(): the routes live in mixins by resource (`_async/_pipelines.py`...).
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_") and name not in {"close", "aclose"}
    }


def test_the_async_client_mirrors_the_sync_client_method_for_method() -> None:
    sync, asynchronous = public_methods(WatcherClient), public_methods(AsyncWatcherClient)
    assert len(sync) > 50
    assert sync.keys() == asynchronous.keys()
    for name, signature in sync.items():
        assert list(signature.parameters) == list(asynchronous[name].parameters), name
