"""How database errors look to clients: real PostgreSQL errors (raised with their SQLSTATE by
the server itself) through `ErrorMiddleware` — transient ones are 503 + Retry-After, refused
values 422, violated constraints 409, and no body ever carries the SQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from watcher.app import ErrorMiddleware
from watcher.db.embedded import EmbeddedPostgres
from watcher.db.engine import async_url, is_outage, is_transient

RETRY_AFTER = 7


def raising(sqlstate: str) -> str:
    return f"DO $$ BEGIN RAISE EXCEPTION 'secret detail' USING ERRCODE = '{sqlstate}'; END $$"


@dataclass
class SqlRoute:
    """A bare app whose one route runs a statement in a transaction, behind ErrorMiddleware:
    whatever PostgreSQL raises escapes to the middleware unhandled (and is kept in `caught`)."""

    client: TestClient
    caught: list[BaseException] = field(default_factory=list)

    def run(self, sql: str) -> Any:  # starlette's TestClient answers with httpx2 responses
        return self.client.get("/", params={"sql": sql})


@pytest.fixture
def route(postgres: EmbeddedPostgres) -> Iterator[SqlRoute]:
    caught: list[BaseException] = []

    async def endpoint(request: Request) -> Response:
        engine = create_async_engine(async_url(postgres.url))
        try:
            async with engine.begin() as conn:
                await conn.execute(text(request.query_params["sql"]))
        except Exception as error:
            caught.append(error)
            raise
        finally:
            await engine.dispose()
        return Response(status_code=204)

    app = Starlette(
        routes=[Route("/", endpoint)],
        middleware=[Middleware(ErrorMiddleware, retry_after=RETRY_AFTER)],
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        yield SqlRoute(client, caught)


@pytest.mark.parametrize(
    "sqlstate",
    [
        "57014",  # query_canceled: statement_timeout
        "40P01",  # deadlock_detected
        "40001",  # serialization_failure
        "55P03",  # lock_not_available
    ],
)
def test_transient_failures_are_503_with_retry_after(route: SqlRoute, sqlstate: str) -> None:
    r = route.run(raising(sqlstate))
    assert r.status_code == 503, r.text
    assert r.headers["Retry-After"] == str(RETRY_AFTER)
    assert r.json()["detail"].endswith("retry later")
    assert "secret detail" not in r.text and "RAISE" not in r.text
    [error] = route.caught
    assert is_transient(error) and not is_outage(error)  # the pooled connection is fine


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT CAST(99999999999 AS integer)",  # 22003 numeric_value_out_of_range
        "SELECT CAST('seven' AS integer)",  # 22P02 invalid_text_representation
        raising("22001"),  # string_data_right_truncation
    ],
)
def test_a_value_the_database_refuses_is_422_without_the_sql(route: SqlRoute, sql: str) -> None:
    r = route.run(sql)
    assert r.status_code == 422, r.text
    assert r.json() == {
        "detail": "invalid request: a value is out of range for the database",
        "errors": [],
    }
    assert "Retry-After" not in r.headers


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO pipeline_type (name) VALUES ('NOT LOWER CASE')",  # 23514 check
        "INSERT INTO pipeline (name, pipeline_type_id) VALUES ('orphan', 424242)",  # 23503 FK
        raising("23505"),  # unique_violation
    ],
)
def test_an_unexpected_constraint_violation_is_409_without_the_sql(
    route: SqlRoute, sql: str
) -> None:
    r = route.run(sql)
    assert r.status_code == 409, r.text
    assert r.json() == {"detail": "the request conflicts with stored data", "errors": []}
    assert "pipeline" not in r.text and "INSERT" not in r.text


def test_other_database_errors_stay_a_generic_500(route: SqlRoute) -> None:
    r = route.run("SELECT * FROM no_such_table")
    assert r.status_code == 500
    assert r.json() == {"detail": "internal server error", "errors": []}


def test_a_connection_left_mid_error_by_a_shutdown_counts_as_an_outage() -> None:
    # What asyncpg raises on a pooled connection that received PostgreSQL's FATAL 57P01 while
    # idle; seen as a 500 in the restart test before it was classified.
    error = asyncpg.exceptions.InternalClientError(
        "cannot switch to state 12; another operation (2) is in progress"
    )
    assert is_outage(error)
