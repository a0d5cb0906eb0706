"""track() when Watcher misbehaves: the user's code always runs, one warning, strict raises.
The network is mocked (respx); the live-server behaviour is in test_client.py."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator

import httpx
import pytest
import respx
from watcher_client import (
    AsyncWatcherClient,
    InvalidResponse,
    PipelineInactive,
    RetryPolicy,
    ServerError,
    WatcherClient,
    WatcherUnavailable,
)

URL = "http://watcher.test"
SYNCED = {"id": 1, "active": True, "load_lineage": True, "watermark": "41"}


def no_sleep(seconds: float) -> None:
    pass


@pytest.fixture
def client() -> Iterator[WatcherClient]:
    with WatcherClient(URL, retry=RetryPolicy(retries=1), sleep=no_sleep, env={}) as client:
        yield client


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=URL, assert_all_called=False) as router:
        yield router


@pytest.fixture
def warnings(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="watcher_client")
    return caplog


def warned(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_an_unreachable_watcher_runs_the_body_untracked_with_one_warning(
    client: WatcherClient, mock: respx.MockRouter, warnings: pytest.LogCaptureFixture
) -> None:
    mock.route().mock(side_effect=httpx.ConnectError("refused"))
    with client.track("orders", "extract", next_watermark=42) as run:
        rows = ["a", "b"]
        run.inserts = len(rows)
        with run.child("orders_child") as child:
            child.inserts = 1
    assert (run.tracked, run.watermark, child.tracked) == (False, None, False)
    assert len(warned(warnings)) == 1
    assert "syncing the pipeline for pipeline 'orders' failed" in warned(warnings)[0]
    assert mock.calls.call_count == 2  # one request and its retry; the child sends nothing


def test_the_decorator_returns_the_functions_result_when_watcher_is_down(
    client: WatcherClient, mock: respx.MockRouter, warnings: pytest.LogCaptureFixture
) -> None:
    mock.route().mock(return_value=httpx.Response(500))

    @client.track("orders", "extract")
    def load(n: int) -> int:
        return n * 2

    assert load(21) == 42
    assert len(warned(warnings)) == 1


def test_a_failed_end_still_returns_the_body_result_and_warns_once(
    client: WatcherClient, mock: respx.MockRouter, warnings: pytest.LogCaptureFixture
) -> None:
    mock.post("/pipeline").mock(return_value=httpx.Response(200, json=SYNCED))
    mock.post("/start_pipeline_execution").mock(return_value=httpx.Response(201, json={"id": 9}))
    mock.post("/end_pipeline_execution").mock(side_effect=httpx.ReadTimeout("slow"))
    with client.track("orders", "extract") as run:
        result = run.watermark
    assert result == "41"
    assert len(warned(warnings)) == 1
    assert "ending the execution" in warned(warnings)[0]


def test_the_body_exception_wins_over_a_watcher_failure(
    client: WatcherClient, mock: respx.MockRouter
) -> None:
    mock.route().mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(KeyError):
        with client.track("orders", "extract"):
            raise KeyError("boom")


def test_strict_raises_before_the_body_runs(client: WatcherClient, mock: respx.MockRouter) -> None:
    mock.route().mock(side_effect=httpx.ConnectError("refused"))
    ran = []
    with pytest.raises(WatcherUnavailable):
        with client.track("orders", "extract", strict=True):
            ran.append(True)
    assert ran == []


def test_strict_notes_a_failed_end_on_the_bodys_own_exception(
    client: WatcherClient, mock: respx.MockRouter
) -> None:
    mock.post("/pipeline").mock(return_value=httpx.Response(200, json=SYNCED))
    mock.post("/start_pipeline_execution").mock(return_value=httpx.Response(201, json={"id": 9}))
    mock.post("/end_pipeline_execution").mock(return_value=httpx.Response(503))
    with pytest.raises(ValueError) as caught:
        with client.track("orders", "extract", strict=True):
            raise ValueError("bad row")
    assert "recording the failed run also failed" in caught.value.__notes__[0]


def test_strict_raises_a_failed_end_after_a_successful_body(
    client: WatcherClient, mock: respx.MockRouter
) -> None:
    mock.post("/pipeline").mock(return_value=httpx.Response(200, json=SYNCED))
    mock.post("/start_pipeline_execution").mock(return_value=httpx.Response(201, json={"id": 9}))
    mock.post("/end_pipeline_execution").mock(return_value=httpx.Response(500))
    with pytest.raises(ServerError), client.track("orders", "extract", strict=True):
        pass


def test_an_inactive_pipeline_skips_the_body_that_reads_the_watermark(
    client: WatcherClient, mock: respx.MockRouter, warnings: pytest.LogCaptureFixture
) -> None:
    mock.post("/pipeline").mock(return_value=httpx.Response(200, json={**SYNCED, "active": False}))
    start = mock.post("/start_pipeline_execution")
    loaded = []
    with client.track("orders", "extract") as run:
        loaded.append(run.watermark)  # raises PipelineInactive, swallowed by the with block
    assert (run.skipped, loaded, start.called) == (True, [], False)
    assert "pipeline 'orders' is inactive" in warnings.records[-1].getMessage()
    assert warned(warnings) == []


def test_an_inactive_pipeline_skips_a_decorated_function(
    client: WatcherClient, mock: respx.MockRouter
) -> None:
    mock.post("/pipeline").mock(return_value=httpx.Response(200, json={**SYNCED, "active": False}))
    calls = []

    @client.track("orders", "extract")
    def load() -> str:
        calls.append(1)
        return "done"

    assert load() is None
    assert calls == []


def test_pipeline_inactive_from_a_tracked_body_is_not_swallowed(
    client: WatcherClient, mock: respx.MockRouter
) -> None:
    mock.post("/pipeline").mock(return_value=httpx.Response(200, json=SYNCED))
    mock.post("/start_pipeline_execution").mock(return_value=httpx.Response(201, json={"id": 9}))
    end = mock.post("/end_pipeline_execution").mock(return_value=httpx.Response(204))
    with pytest.raises(PipelineInactive), client.track("orders", "extract"):
        raise PipelineInactive("other")
    assert json.loads(end.calls[0].request.content)["completed_successfully"] is False


async def test_the_async_track_fails_open_too(
    mock: respx.MockRouter, warnings: pytest.LogCaptureFixture
) -> None:
    async def sleep(seconds: float) -> None:
        pass

    mock.route().mock(side_effect=httpx.ConnectError("refused"))
    async with AsyncWatcherClient(URL, retry=RetryPolicy(retries=1), sleep=sleep) as client:

        @client.track("orders", "extract")
        async def load(run: object = None) -> str:
            return "loaded"

        assert await load() == "loaded"
    assert len(warned(warnings)) == 1


async def test_the_async_track_skips_inactive_pipelines_and_records_failures(
    mock: respx.MockRouter,
) -> None:
    async def sleep(seconds: float) -> None:
        pass

    synced = mock.post("/pipeline").mock(
        side_effect=[
            httpx.Response(200, json={**SYNCED, "active": False}),
            httpx.Response(200, json={**SYNCED, "active": False}),
            httpx.Response(200, json=SYNCED),
        ]
    )
    mock.post("/start_pipeline_execution").mock(return_value=httpx.Response(201, json={"id": 3}))
    end = mock.post("/end_pipeline_execution").mock(return_value=httpx.Response(204))
    async with AsyncWatcherClient(URL, sleep=sleep, env={}) as client:
        async with client.track("orders", "extract") as run:
            assert run.watermark  # raises PipelineInactive, swallowed by the block
            pytest.fail("not reached")
        calls = []

        @client.track("orders", "extract")
        async def job() -> str:
            calls.append(1)
            return "ran"

        assert (run.skipped, await job(), calls) == (True, None, [])
        with pytest.raises(RuntimeError, match="disk full"):
            async with client.track("orders", "extract"):
                raise RuntimeError("disk full")
    assert synced.call_count == 3
    body = json.loads(end.calls[0].request.content)
    assert body["completed_successfully"] is False
    assert body["execution_metadata"] == {
        "error_type": "RuntimeError",
        "error_message": "disk full",
    }


def test_a_malformed_answer_fails_open_too(
    client: WatcherClient, mock: respx.MockRouter, warnings: pytest.LogCaptureFixture
) -> None:
    mock.post("/pipeline").mock(return_value=httpx.Response(200, json=SYNCED))
    mock.post("/start_pipeline_execution").mock(return_value=httpx.Response(200, json=["?"]))
    with client.track("orders", "extract") as run:
        pass
    assert not run.tracked
    assert "expected an object with an integer id" in warned(warnings)[0]


def broken_gzip(request: httpx.Request) -> httpx.Response:
    # A body that claims gzip but is not: httpx raises DecodingError while reading it.
    headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    return httpx.Response(200, headers=headers, stream=httpx.ByteStream(b"not gzip"))


def redirect_loop(request: httpx.Request) -> httpx.Response:
    raise httpx.TooManyRedirects("Exceeded maximum allowed redirects.", request=request)


NOT_TRANSPORT_ERRORS = pytest.mark.parametrize(
    "answer", [broken_gzip, redirect_loop], ids=["decoding_error", "too_many_redirects"]
)


@NOT_TRANSPORT_ERRORS
def test_an_httpx_error_that_is_no_transport_error_fails_open(
    client: WatcherClient,
    mock: respx.MockRouter,
    warnings: pytest.LogCaptureFixture,
    answer: Callable[[httpx.Request], httpx.Response],
) -> None:
    mock.route().mock(side_effect=answer)
    with client.track("orders", "extract") as run:
        rows = 3
    assert (rows, run.tracked) == (3, False)
    assert len(warned(warnings)) == 1
    assert mock.calls.call_count == 1  # not an outage: nothing to wait out, so no retry


@NOT_TRANSPORT_ERRORS
def test_strict_raises_an_httpx_error_as_a_watcher_error(
    client: WatcherClient,
    mock: respx.MockRouter,
    answer: Callable[[httpx.Request], httpx.Response],
) -> None:
    mock.route().mock(side_effect=answer)
    with pytest.raises(InvalidResponse) as caught:
        with client.track("orders", "extract", strict=True):
            pass
    assert isinstance(caught.value.__cause__, httpx.DecodingError | httpx.TooManyRedirects)
    with pytest.raises(InvalidResponse):
        client.health()  # the single-shot routes map it too


@NOT_TRANSPORT_ERRORS
async def test_the_async_client_fails_open_on_them_too(
    mock: respx.MockRouter,
    warnings: pytest.LogCaptureFixture,
    answer: Callable[[httpx.Request], httpx.Response],
) -> None:
    mock.route().mock(side_effect=answer)
    async with AsyncWatcherClient(URL, env={}) as client:
        async with client.track("orders", "extract") as run:
            pass
        with pytest.raises(InvalidResponse):
            await client.heartbeat()
    assert not run.tracked
    assert len(warned(warnings)) == 1
