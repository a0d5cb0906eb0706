"""The client's bearer token against a live Watcher with authentication on."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from watcher_client import AuthenticationError, PermissionDenied, WatcherClient

from tests.conftest import LiveServer, start_live_server
from tests.conftest import test_settings as settings_for
from watcher import auth
from watcher.db.embedded import EmbeddedPostgres


@pytest.fixture(scope="module")
def secured(postgres: EmbeddedPostgres) -> Iterator[LiveServer]:
    server = start_live_server(postgres.url, settings_for(auth_enabled=True))
    yield server
    server.stop()


@pytest.fixture
def url(secured: LiveServer, live: LiveServer) -> str:
    # `live` is requested so the shared clean-up truncates every table after the test.
    return secured.url


def make_token(server: LiveServer, *scopes: str) -> str:
    return server.in_transaction(
        lambda conn: auth.create_token(conn, "client", scopes, server.clock.now())
    )[1]


def test_an_ingest_token_is_enough_to_track_runs(url: str, secured: LiveServer) -> None:
    with WatcherClient(url, env={"WATCHER_TOKEN": make_token(secured, "ingest")}) as client:
        with client.track("orders", "extract") as run:
            run.inserts = 1
        assert run.tracked
        with pytest.raises(PermissionDenied):
            client.get_pipeline(run.pipeline_id or 0)  # ingest does not imply read


def test_a_missing_token_is_raised_at_once_when_strict_and_warned_otherwise(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    sleeps: list[float] = []
    with WatcherClient(url, env={}, sleep=sleeps.append) as client:
        with pytest.raises(AuthenticationError):
            with client.track("orders", "extract", strict=True):
                pass
        with caplog.at_level(logging.WARNING, logger="watcher_client"):
            with client.track("orders", "extract") as run:
                pass
    assert not run.tracked and sleeps == []
    assert "401" in caplog.records[0].getMessage()
