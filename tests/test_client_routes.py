"""The client has a method for every route of the API, sync and async alike.

`ROUTES` names, for each operation of `watcher.app.operations()`, the client method that
calls it and sample arguments. A new route without a client method fails
`test_every_route_has_a_client_method`; each method is called against a mocked transport
(respx) to prove it sends that method and path, so the table cannot drift from the code.

Routes deliberately without a client method: none. (/docs and /openapi.json are not API
operations: they are the documentation, not part of the contract.)
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx
from watcher_client import AsyncWatcherClient, RetryPolicy, WatcherClient

from watcher.app import operations

URL = "http://watcher.test"
ADDRESS = {"name": "a.b.c", "address_type_name": "postgres", "address_type_group_name": "database"}
EVENT = {"eventType": "START", "eventTime": "2024-01-01T00:00:00Z"}

Call = tuple[str, tuple[Any, ...], dict[str, Any]]

ROUTES: dict[tuple[str, str], Call] = {
    ("GET", "/"): ("heartbeat", (), {}),
    ("GET", "/health"): ("health", (), {}),
    ("POST", "/pipeline_type"): ("create_pipeline_type", ("extract",), {}),
    ("GET", "/pipeline_type"): ("list_pipeline_types", (), {}),
    ("GET", "/pipeline_type/{id}"): ("get_pipeline_type", (7,), {}),
    ("PATCH", "/pipeline_type"): ("update_pipeline_type", ("extract",), {"group_name": "g"}),
    ("POST", "/pipeline"): ("create_pipeline", ("orders", "extract"), {}),
    ("GET", "/pipeline"): ("list_pipelines", (), {}),
    ("GET", "/pipeline/{id}"): ("get_pipeline", (7,), {}),
    ("PATCH", "/pipeline"): ("update_pipeline", (7,), {"active": False}),
    ("POST", "/start_pipeline_execution"): ("start_execution", (7,), {}),
    ("POST", "/end_pipeline_execution"): ("end_execution", (7,), {}),
    ("GET", "/pipeline_execution/{id}"): ("get_execution", (7,), {}),
    ("GET", "/pipeline_execution"): ("list_executions", (), {"pipeline_id": 7}),
    ("POST", "/address_type"): ("create_address_type", ("postgres", "database"), {}),
    ("GET", "/address_type"): ("list_address_types", (), {}),
    ("GET", "/address_type/{id}"): ("get_address_type", (7,), {}),
    ("PATCH", "/address_type"): ("update_address_type", (7,), {"group_name": "g"}),
    ("POST", "/address"): ("create_address", (ADDRESS,), {}),
    ("GET", "/address"): ("list_addresses", (), {}),
    ("GET", "/address/{id}"): ("get_address", (7,), {}),
    ("PATCH", "/address"): ("update_address", (7,), {"primary_key": "id"}),
    ("POST", "/address_lineage"): ("create_lineage", (7, [ADDRESS], [ADDRESS]), {}),
    ("GET", "/address_lineage/{id}"): ("get_lineage", (7,), {}),
    ("GET", "/lineage-graph/"): ("get_lineage_graph", (7,), {}),
    ("POST", "/lineage-graph/refresh"): ("refresh_lineage_graph", (), {}),
    ("GET", "/metrics"): ("metrics", (), {}),
    ("POST", "/timeliness"): ("check_timeliness", (), {}),
    ("POST", "/freshness"): ("check_freshness", (), {}),
    ("POST", "/missed_runs"): ("check_missed_runs", (), {}),
    ("POST", "/anomaly_detection_rule"): ("create_anomaly_rule", (7, "inserts"), {}),
    ("GET", "/anomaly_detection_rule"): ("list_anomaly_rules", (7,), {}),
    ("GET", "/anomaly_detection_rule/{id}"): ("get_anomaly_rule", (7,), {}),
    ("PATCH", "/anomaly_detection_rule"): ("update_anomaly_rule", (7,), {"active": False}),
    ("POST", "/anomaly_detection/detect/{pipeline_id}"): ("detect_anomalies", (7,), {}),
    ("POST", "/unflag_anomaly"): ("unflag_anomaly", (7, ["inserts"]), {}),
    ("POST", "/log_cleanup"): ("cleanup_logs", (90,), {}),
    ("GET", "/pipeline/{id}/expectations"): ("get_expectations", (7,), {}),
    ("PATCH", "/pipeline/{id}/expectations"): ("update_expectations", (7,), {"sensitivity": "low"}),
    ("PATCH", "/pipeline_type/{id}/expectations"): (
        "update_type_expectations",
        (7,),
        {"opted_out": True},
    ),
    ("POST", "/pipeline/{id}/expectations/feedback"): ("expectation_feedback", (7, 8), {}),
    ("POST", "/pipeline/{id}/expectations/retrain"): ("retrain_expectations", (7,), {}),
    ("POST", "/expectations/learn"): ("learn_expectations", (), {}),
    ("POST", "/expectations/check"): ("check_expectations", (), {}),
    ("POST", "/maintenance_window"): (
        "create_maintenance_window",
        (datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC), "upgrade"),
        {"pipeline_id": 7},
    ),
    ("GET", "/maintenance_window"): ("list_maintenance_windows", (), {"pipeline_id": 7}),
    ("GET", "/maintenance_window/{id}"): ("get_maintenance_window", (7,), {}),
    ("DELETE", "/maintenance_window/{id}"): ("delete_maintenance_window", (7,), {}),
    ("GET", "/pipeline/{id}/upstream"): ("get_upstream", (7,), {}),
    ("GET", "/pipeline/{id}/downstream"): ("get_downstream", (7,), {"depth": 2}),
    ("GET", "/incidents"): ("list_incidents", (), {}),
    ("GET", "/incidents/{id}"): ("get_incident", (7,), {}),
    ("POST", "/incidents/{id}/acknowledge"): ("acknowledge_incident", (7,), {"by": "ops"}),
    ("POST", "/incidents/evaluate"): ("evaluate_incidents", (), {}),
    ("POST", "/api/v1/lineage"): ("send_lineage_event", (EVENT,), {}),
    ("POST", "/api/v1/lineage/batch"): ("send_lineage_batch", ([EVENT],), {}),
}
# Routes a client has no business calling; documented in the module docstring. Empty today.
EXCLUDED: set[tuple[str, str]] = set()
# Public client methods that are not one route.
NOT_ROUTES = {"track", "request", "close", "aclose"}


def declared() -> set[tuple[str, str]]:
    return {(op.method, re.sub(r":\w+}", "}", op.path)) for op in operations()}


def concrete(path: str) -> str:
    return re.sub(r"{\w+}", "7", path)


def public_methods(cls: type) -> set[str]:
    return {n for n, f in inspect.getmembers(cls, inspect.isfunction) if not n.startswith("_")}


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=URL) as router:
        router.route().mock(return_value=httpx.Response(200, json={"id": 7, "results": []}))
        yield router


def test_every_route_has_a_client_method() -> None:
    assert declared() - EXCLUDED == set(ROUTES), "a route without a client method, or stale"


def test_every_public_method_is_a_route_and_the_clients_are_twins() -> None:
    sync, async_ = public_methods(WatcherClient), public_methods(AsyncWatcherClient)
    routed = {name for name, _, _ in ROUTES.values()}
    assert sync - NOT_ROUTES == routed
    assert async_ - NOT_ROUTES == routed
    for name in routed:
        assert inspect.iscoroutinefunction(getattr(AsyncWatcherClient, name)), name
        sync_params = inspect.signature(getattr(WatcherClient, name)).parameters
        async_params = inspect.signature(getattr(AsyncWatcherClient, name)).parameters
        assert list(sync_params) == list(async_params), name


ROUTE_IDS = [f"{m} {p}" for m, p in ROUTES]


@pytest.mark.parametrize(("route", "call"), list(ROUTES.items()), ids=ROUTE_IDS)
def test_the_sync_method_calls_its_route(
    mock: respx.MockRouter, route: tuple[str, str], call: Call
) -> None:
    name, args, kwargs = call
    with WatcherClient(URL, env={}, retry=RetryPolicy(retries=0)) as client:
        getattr(client, name)(*args, **kwargs)
    request = mock.calls.last.request
    assert (request.method, request.url.path) == (route[0], concrete(route[1]))
    assert mock.calls.call_count == 1


@pytest.mark.parametrize(("route", "call"), list(ROUTES.items()), ids=ROUTE_IDS)
async def test_the_async_method_calls_its_route(
    mock: respx.MockRouter, route: tuple[str, str], call: Call
) -> None:
    name, args, kwargs = call
    async with AsyncWatcherClient(URL, env={}, retry=RetryPolicy(retries=0)) as client:
        await getattr(client, name)(*args, **kwargs)
    request = mock.calls.last.request
    assert (request.method, request.url.path) == (route[0], concrete(route[1]))
    assert mock.calls.call_count == 1


def test_list_anomaly_rules_filters_by_pipeline(mock: respx.MockRouter) -> None:
    with WatcherClient(URL, env={}) as client:
        client.list_anomaly_rules(7, limit=5)
    assert dict(mock.calls.last.request.url.params) == {"pipeline_id": "7", "limit": "5"}
