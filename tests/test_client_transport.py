"""Transport failures, mocked at the network chokepoint (respx): retries, Retry-After, no
duplicates. Connection refused uses a real closed port."""

from __future__ import annotations

import json
import random
import socket
from collections.abc import Iterator

import httpx
import pytest
import respx
from watcher_client import (
    AsyncWatcherClient,
    RetryPolicy,
    ServiceUnavailable,
    ValidationError,
    WatcherClient,
    WatcherUnavailable,
)

URL = "http://watcher.test"
DOWN = {"detail": "database unavailable", "errors": []}


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(sleeps: list[float]) -> Iterator[WatcherClient]:
    retry = RetryPolicy(retries=3, backoff=0.5, rng=random.Random(1))
    with WatcherClient(URL, retry=retry, sleep=sleeps.append, env={}) as client:
        yield client


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=URL, assert_all_called=False) as router:
        yield router


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_503_with_retry_after_is_retried_after_exactly_that_long(
    client: WatcherClient, mock: respx.MockRouter, sleeps: list[float]
) -> None:
    route = mock.post("/pipeline").mock(
        side_effect=[
            httpx.Response(503, json=DOWN, headers={"Retry-After": "2"}),
            httpx.Response(
                200, json={"id": 1, "active": True, "load_lineage": False, "watermark": "9"}
            ),
        ]
    )
    assert client.create_pipeline("p", "t")["watermark"] == "9"
    assert route.call_count == 2
    assert sleeps == [2.0]


def test_connection_errors_timeouts_429_and_5xx_back_off_with_jitter(
    client: WatcherClient, mock: respx.MockRouter, sleeps: list[float]
) -> None:
    route = mock.get("/pipeline/1").mock(
        side_effect=[
            httpx.ConnectError("refused"),
            httpx.ReadTimeout("slow"),
            httpx.Response(502),
            httpx.Response(200, json={"id": 1, "name": "p"}),
        ]
    )
    assert client.get_pipeline(1)["name"] == "p"
    assert route.call_count == 4
    assert [d <= cap for d, cap in zip(sleeps, [0.5, 1.0, 2.0], strict=True)] == [True] * 3


def test_it_raises_the_last_error_when_retries_run_out(
    client: WatcherClient, mock: respx.MockRouter, sleeps: list[float]
) -> None:
    mock.get("/").mock(return_value=httpx.Response(503, json=DOWN, headers={"Retry-After": "1"}))
    with pytest.raises(ServiceUnavailable) as caught:
        client.heartbeat()
    assert caught.value.detail == "database unavailable"
    assert sleeps == [1.0, 1.0, 1.0]


def test_a_validation_error_is_raised_at_once_with_its_field_errors(
    client: WatcherClient, mock: respx.MockRouter, sleeps: list[float]
) -> None:
    errors = [{"loc": ["body", "inserts"], "msg": "must be >= 0"}]
    mock.post("/end_pipeline_execution").mock(
        return_value=httpx.Response(422, json={"detail": "invalid", "errors": errors})
    )
    with pytest.raises(ValidationError) as caught:
        client.end_execution(5, inserts=-1)
    assert caught.value.errors == errors
    assert sleeps == []


def test_a_retried_start_resends_the_same_run_id(
    client: WatcherClient, mock: respx.MockRouter
) -> None:
    route = mock.post("/start_pipeline_execution").mock(
        side_effect=[httpx.ReadTimeout("lost response"), httpx.Response(201, json={"id": 7})]
    )
    assert client.start_execution(3) == {"id": 7}
    sent = [json.loads(call.request.content) for call in route.calls]
    assert sent[0]["run_id"] == sent[1]["run_id"]
    assert len(sent[0]["run_id"]) == 36


def test_two_starts_get_two_run_ids(client: WatcherClient, mock: respx.MockRouter) -> None:
    route = mock.post("/start_pipeline_execution").mock(
        return_value=httpx.Response(201, json={"id": 7})
    )
    client.start_execution(3)
    client.start_execution(3)
    first, second = (json.loads(call.request.content)["run_id"] for call in route.calls)
    assert first != second


def test_a_retried_end_resends_identical_values(
    client: WatcherClient, mock: respx.MockRouter
) -> None:
    route = mock.post("/end_pipeline_execution").mock(
        side_effect=[httpx.Response(500), httpx.Response(204)]
    )
    client.end_execution(4, inserts=3)
    assert route.calls[0].request.content == route.calls[1].request.content


def test_the_token_is_sent_as_a_bearer_header(mock: respx.MockRouter) -> None:
    route = mock.get("/").mock(return_value=httpx.Response(200, json={"status": "ok"}))
    with WatcherClient(env={"WATCHER_URL": URL, "WATCHER_TOKEN": "s3cret"}) as client:
        client.heartbeat()
    assert route.calls[0].request.headers["Authorization"] == "Bearer s3cret"


def test_health_returns_the_not_ready_report_without_retrying(
    client: WatcherClient, mock: respx.MockRouter, sleeps: list[float]
) -> None:
    mock.get("/health").mock(return_value=httpx.Response(503, json={"status": "unavailable"}))
    assert client.health() == {"status": "unavailable"}
    assert sleeps == []


def test_connection_refused_on_a_closed_port_is_retried_then_raised(sleeps: list[float]) -> None:
    retry = RetryPolicy(retries=2, backoff=0.01)
    url = f"http://127.0.0.1:{closed_port()}"
    with WatcherClient(url, retry=retry, sleep=sleeps.append) as client:
        with pytest.raises(WatcherUnavailable, match="ConnectError"):
            client.heartbeat()
    assert len(sleeps) == 2


async def test_the_async_client_retries_the_same_way(mock: respx.MockRouter) -> None:
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    route = mock.post("/start_pipeline_execution").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "3"}),
            httpx.ConnectError("refused"),
            httpx.Response(200, json={"id": 11}),
        ]
    )
    async with AsyncWatcherClient(URL, sleep=sleep, env={}) as client:
        assert await client.start_execution(pipeline_name="p") == {"id": 11}
    run_ids = {json.loads(call.request.content)["run_id"] for call in route.calls}
    assert len(run_ids) == 1
    assert sleeps[0] == 3.0 and len(sleeps) == 2
