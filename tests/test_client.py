"""The client against a live Watcher: real HTTP, real PostgreSQL (fixture `live`)."""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from watcher_client import (
    Address,
    AsyncWatcherClient,
    Conflict,
    NotFound,
    RetryPolicy,
    ValidationError,
    WatcherClient,
    WatcherUnavailable,
)

from tests.conftest import LiveServer
from watcher.checks.anomalies.detector import Detector

SOURCE: Address = {
    "name": "shop.public.orders",
    "address_type_name": "postgres",
    "address_type_group_name": "database",
}
TARGET: Address = {
    "name": "dwh.sales.orders",
    "address_type_name": "postgres",
    "address_type_group_name": "database",
}


@pytest.fixture
def watcher(live: LiveServer) -> Iterator[WatcherClient]:
    with WatcherClient(live.url, env={}) as client:
        yield client


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def executions(live: LiveServer) -> list[dict[str, Any]]:
    return live.sql("SELECT * FROM pipeline_execution ORDER BY id")


def test_track_records_a_run_and_the_next_run_starts_from_its_watermark(
    watcher: WatcherClient, live: LiveServer
) -> None:
    with watcher.track(
        "orders", "extract", next_watermark="2024-01-02", sources=[SOURCE], targets=[TARGET]
    ) as run:
        assert (run.watermark, run.next_watermark, run.load_lineage) == (None, "2024-01-02", True)
        run.inserts, run.total_rows = 5, 10
        run.metadata["source_file"] = "orders.csv"

    execution = watcher.get_execution(run.execution_id or 0)
    assert execution["completed_successfully"] is True
    assert (execution["inserts"], execution["total_rows"]) == (5, 10)
    assert execution["execution_metadata"] == {"source_file": "orders.csv"}
    assert execution["run_id"] == run.run_id
    pipeline = watcher.get_pipeline(run.pipeline_id or 0)
    assert (pipeline["watermark"], pipeline["load_lineage"]) == ("2024-01-02", False)

    with watcher.track("orders", "extract", next_watermark="2024-01-03", targets=[SOURCE]) as again:
        assert (again.watermark, again.load_lineage) == ("2024-01-02", False)
    assert watcher.get_pipeline(again.pipeline_id or 0)["watermark"] == "2024-01-03"


def test_lineage_is_posted_once_while_load_lineage_is_on(
    watcher: WatcherClient, live: LiveServer
) -> None:
    other: Address = {**TARGET, "name": "dwh.sales.other"}
    for target in (TARGET, other):
        with watcher.track("orders", "extract", sources=[SOURCE], targets=[target]):
            pass
    edges = live.sql(
        "SELECT s.name AS source, t.name AS target FROM address_lineage l "
        "JOIN address s ON s.id = l.source_address_id JOIN address t ON t.id = l.target_address_id"
    )
    assert edges == [{"source": SOURCE["name"], "target": TARGET["name"]}]
    source_id = live.sql("SELECT id FROM address WHERE name = :n", n=SOURCE["name"])[0]["id"]
    graph = watcher.get_lineage(source_id)
    assert [a["address_name"] for a in graph["downstream"]] == [TARGET["name"]]


def test_the_decorator_records_each_call_and_returns_the_result(
    watcher: WatcherClient, live: LiveServer
) -> None:
    @watcher.track("daily_load", "load")
    def load(day: str, run: Any = None) -> str:
        run.updates = 3
        return f"loaded {day}"

    assert load("monday") == "loaded monday"
    assert load("tuesday") == "loaded tuesday"
    rows = executions(live)
    assert [(r["completed_successfully"], r["updates"]) for r in rows] == [(True, 3), (True, 3)]
    assert rows[0]["run_id"] != rows[1]["run_id"]


def test_a_failing_body_is_recorded_as_failed_and_re_raised(
    watcher: WatcherClient, live: LiveServer
) -> None:
    with pytest.raises(ValueError, match="bad row 17"):
        with watcher.track("orders", "extract", next_watermark="2024-02-01") as run:
            run.inserts = 2
            raise ValueError("bad row 17")
    (row,) = executions(live)
    assert row["completed_successfully"] is False and row["inserts"] == 2
    assert row["execution_metadata"] == {"error_type": "ValueError", "error_message": "bad row 17"}
    assert watcher.get_pipeline(run.pipeline_id or 0)["watermark"] is None


def test_child_runs_carry_the_parent_execution(watcher: WatcherClient, live: LiveServer) -> None:
    with watcher.track("nightly", "batch") as parent:
        with parent.child("nightly_orders") as first:
            first.inserts = 1
        with parent.child("nightly_customers", "dimension") as second:
            second.inserts = 2
    tree = watcher.get_execution(parent.execution_id or 0)
    assert [c["id"] for c in tree["children"]] == [first.execution_id, second.execution_id]
    assert watcher.get_execution(first.execution_id or 0)["parent_id"] == parent.execution_id
    types = live.sql(
        "SELECT p.name, t.name AS type FROM pipeline p JOIN pipeline_type t "
        "ON t.id = p.pipeline_type_id ORDER BY p.id"
    )
    assert [r["type"] for r in types] == ["batch", "batch", "dimension"]


def test_an_inactive_pipeline_is_skipped_and_nothing_is_recorded(
    watcher: WatcherClient, live: LiveServer
) -> None:
    watcher.create_pipeline("paused", "extract")
    watcher.update_pipeline("paused", active=False)
    done = []
    with watcher.track("paused", "extract") as run:
        done.append(run.watermark)

    @watcher.track("paused", "extract")
    def job() -> str:
        return "ran"

    assert (run.skipped, done, job()) == (True, [], None)
    assert executions(live) == []


class LoseFirstResponse(httpx.BaseTransport):
    """Deliver the request to Watcher, then lose the first answer as a timeout would."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.lost = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.url.path == "/start_pipeline_execution" and not self.lost:
            response.read()
            self.lost += 1
            raise httpx.ReadTimeout("response lost", request=request)
        return response


def test_a_start_retried_after_a_lost_response_records_one_execution(live: LiveServer) -> None:
    transport = LoseFirstResponse()
    retry = RetryPolicy(backoff=0.01)
    with WatcherClient(live.url, transport=transport, retry=retry, env={}) as client:
        with client.track("orders", "extract") as run:
            pass
    assert transport.lost == 1
    assert [r["id"] for r in executions(live)] == [run.execution_id]


def test_the_same_run_id_returns_the_same_execution(watcher: WatcherClient) -> None:
    pipeline = watcher.create_pipeline("orders", "extract")
    first = watcher.start_execution(pipeline["id"], run_id="airflow-2024-01-01")
    second = watcher.start_execution(pipeline_name="orders", run_id="airflow-2024-01-01")
    assert first == second


def test_ending_twice_is_idempotent_and_different_values_conflict(watcher: WatcherClient) -> None:
    pipeline = watcher.create_pipeline("orders", "extract")
    execution = watcher.start_execution(pipeline["id"])
    watcher.end_execution(execution["id"], inserts=4)
    watcher.end_execution(execution["id"], inserts=4)
    with pytest.raises(Conflict):
        watcher.end_execution(execution["id"], inserts=5)


def test_fail_open_runs_the_body_when_watcher_is_down(caplog: pytest.LogCaptureFixture) -> None:
    retry = RetryPolicy(retries=1, backoff=0.01)
    with WatcherClient(closed_port_url(), retry=retry, env={}) as client:

        @client.track("orders", "extract")
        def job() -> int:
            return 42

        with caplog.at_level(logging.WARNING, logger="watcher_client"):
            assert job() == 42
        with pytest.raises(WatcherUnavailable):
            with client.track("orders", "extract", strict=True):
                pytest.fail("the body must not run when strict tracking cannot start")
    assert len(caplog.records) == 1


def test_strict_raises_what_watcher_rejects_and_fail_open_warns_instead(
    watcher: WatcherClient, live: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ValidationError) as caught:
        with watcher.track("orders", "extract", freshness_number=2, strict=True):
            pass
    assert caught.value.status_code == 422
    with caplog.at_level(logging.WARNING, logger="watcher_client"):
        with watcher.track("orders", "extract", freshness_number=2) as run:
            pass
    assert not run.tracked and len(caplog.records) == 1


def test_every_read_and_write_route_answers(watcher: WatcherClient) -> None:
    assert watcher.heartbeat() == {"status": "ok"}
    assert watcher.health()["status"] == "ok"
    assert "watcher_" in watcher.metrics()
    kind = watcher.create_pipeline_type("extract", freshness_number=1, freshness_datepart="day")
    assert watcher.get_pipeline_type(kind["id"])["freshness_datepart"] == "day"
    assert watcher.update_pipeline_type("extract", mute_freshness_check=True)[
        "mute_freshness_check"
    ]
    assert [t["name"] for t in watcher.list_pipeline_types()] == ["extract"]
    pipeline = watcher.create_pipeline("orders", "extract", next_watermark=5)
    assert watcher.update_pipeline(pipeline["id"], watermark=4)["watermark"] == "4"
    assert [p["name"] for p in watcher.list_pipelines(limit=10)] == ["orders"]
    started = watcher.start_execution(pipeline["id"])
    assert [e["id"] for e in watcher.list_executions(status="running")] == [started["id"]]
    created = watcher.create_lineage(pipeline["id"], [SOURCE], [TARGET])
    assert created["lineage_relationships_created"] == 1
    address = watcher.create_address(SOURCE)
    assert watcher.get_address(address["id"])["table_name"] == "orders"
    assert watcher.update_address(SOURCE["name"], primary_key="id")["primary_key"] == "id"
    assert len(watcher.list_addresses()) == 2
    (postgres,) = watcher.list_address_types()
    assert watcher.get_address_type(postgres["id"])["group_name"] == "database"
    assert watcher.create_address_type("s3", "object_store")["name"] == "s3"
    assert watcher.update_address_type("s3", group_name="blob")["group_name"] == "blob"
    with pytest.raises(NotFound):
        watcher.get_pipeline(999)


async def test_the_async_client_tracks_runs_and_children(live: LiveServer) -> None:
    async with AsyncWatcherClient(live.url, env={}) as client:
        async with client.track("async_orders", "extract", next_watermark=7) as run:
            async with run.child("async_orders_items") as child:
                child.inserts = 9

        @client.track("async_job", "extract")
        async def job(run: Any = None) -> str:
            run.total_rows = 1
            return "ok"

        assert await job() == "ok"
        tree = await client.get_execution(run.execution_id or 0)
    assert [c["id"] for c in tree["children"]] == [child.execution_id]
    assert tree["completed_successfully"] is True
    assert len(executions(live)) == 3


# --- anomaly rules, detection, checks, cleanup and OpenLineage through the client ----------


def seed_history(live: LiveServer, pipeline_id: int, values: list[int], at: datetime) -> None:
    """Successful, already evaluated executions one per day before `at`, at the same hour."""
    for day, value in enumerate(values, start=1):
        started = at - timedelta(days=day)
        live.sql(
            "INSERT INTO pipeline_execution (pipeline_id, start_date, end_date,"
            " completed_successfully, duration_seconds, total_rows, hour_recorded,"
            " date_recorded, anomaly_checked_at) VALUES (:p, :s, :e, true, 600, :v, :h, :d, :s)",
            p=pipeline_id,
            s=started,
            e=started + timedelta(minutes=10),
            v=value,
            h=started.hour,
            d=started.date(),
        )


def test_anomaly_rules_are_created_listed_by_pipeline_read_and_patched(
    watcher: WatcherClient,
) -> None:
    orders = watcher.create_pipeline("orders", "extract")["id"]
    refunds = watcher.create_pipeline("refunds", "extract")["id"]
    rule = watcher.create_anomaly_rule(orders, "total_rows", z_threshold=1.5)
    assert (rule["pipeline_id"], rule["metric_field"], rule["z_threshold"]) == (
        orders,
        "total_rows",
        1.5,
    )
    assert watcher.create_anomaly_rule(orders, "total_rows")["id"] == rule["id"]  # create-or-get
    other = watcher.create_anomaly_rule(refunds, "inserts", minimum_executions=10)
    assert [r["id"] for r in watcher.list_anomaly_rules()] == [rule["id"], other["id"]]
    assert [r["id"] for r in watcher.list_anomaly_rules(refunds)] == [other["id"]]
    assert [r["id"] for r in watcher.list_anomaly_rules(limit=1, offset=1)] == [other["id"]]
    assert watcher.get_anomaly_rule(other["id"])["minimum_executions"] == 10
    patched = watcher.update_anomaly_rule(other["id"], active=False, lookback_days=7)
    assert (patched["active"], patched["lookback_days"]) == (False, 7)
    with pytest.raises(NotFound):
        watcher.get_anomaly_rule(10**9)
    with pytest.raises(ValidationError):
        watcher.create_anomaly_rule(orders, "no_such_metric")


def test_detect_anomalies_judges_the_latest_run_and_unflag_clears_its_flag(
    watcher: WatcherClient, live: LiveServer
) -> None:
    at = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    pipeline = watcher.create_pipeline("orders", "extract")["id"]
    seed_history(live, pipeline, [10, 20, 30, 40, 50, 60], at)
    run = watcher.start_execution(pipeline, start_date=at)
    watcher.end_execution(run["id"], end_date=at + timedelta(minutes=10), total_rows=500)
    detector: Detector = live.services.detector
    live.run(detector.drain)  # no rule yet: the end is evaluated against nothing
    rule = watcher.create_anomaly_rule(pipeline, "total_rows", minimum_executions=5)

    detection = watcher.detect_anomalies(pipeline)
    assert detection["pipeline_execution_id"] == run["id"]
    assert (detection["new_results"], detection["anomalies"]) == (1, 1)
    [result] = detection["results"]
    assert (result["rule_id"], result["metric_field"], result["is_anomaly"]) == (
        rule["id"],
        "total_rows",
        True,
    )
    assert result["baseline_count"] == 6 and result["historical_mean"] == pytest.approx(35)
    assert watcher.get_execution(run["id"])["anomaly_flags"] == {"total_rows": True}

    watcher.unflag_anomaly(run["id"], ["total_rows"], pipeline_id=pipeline)
    assert watcher.get_execution(run["id"])["anomaly_flags"] == {}
    with pytest.raises(NotFound):
        watcher.unflag_anomaly(10**9, ["total_rows"])
    with pytest.raises(NotFound):
        watcher.detect_anomalies(10**9)


def test_the_checks_report_their_findings(watcher: WatcherClient, live: LiveServer) -> None:
    now = datetime.now(UTC)
    slow = watcher.create_pipeline(
        "slow", "extract", timeliness_number=5, timeliness_datepart="minute"
    )
    running = watcher.start_execution(slow["id"], start_date=now - timedelta(minutes=20))
    stale = watcher.create_pipeline(
        "stale", "extract", freshness_number=1, freshness_datepart="hour"
    )
    loaded = watcher.start_execution(stale["id"], start_date=now - timedelta(hours=3))
    watcher.end_execution(loaded["id"], end_date=now - timedelta(hours=2), inserts=1)
    watcher.create_pipeline("hourly", "extract", schedule="0 * * * *", schedule_grace_seconds=60)

    timeliness = watcher.check_timeliness(lookback_minutes=60)
    assert (timeliness["status"], timeliness["lookback_minutes"]) == ("completed", 60)
    [overdue] = timeliness["findings"]
    assert (overdue["pipeline_execution_id"], overdue["execution_status"]) == (
        running["id"],
        "running",
    )
    assert overdue["newly_logged"] is True and overdue["seconds_threshold"] == 300
    assert watcher.check_timeliness()["new_findings"] == 0  # logged once

    freshness = watcher.check_freshness()
    [late] = freshness["findings"]
    assert (late["pipeline_name"], late["threshold_seconds"]) == ("stale", 3600)
    assert late["lag_seconds"] > 3600 and freshness["new_findings"] == 1

    assert watcher.check_missed_runs()["findings"] == []  # nothing was due since it was created
    live.clock.advance(timedelta(hours=2))
    missed = watcher.check_missed_runs()
    assert missed["pipelines_checked"] == 1
    [miss] = missed["findings"]
    assert (miss["pipeline_name"], miss["schedule"], miss["last_start"]) == (
        "hourly",
        "0 * * * *",
        None,
    )


def test_cleanup_logs_counts_in_a_dry_run_then_deletes(
    watcher: WatcherClient, live: LiveServer
) -> None:
    pipeline = watcher.create_pipeline("orders", "extract")["id"]
    old = datetime.now(UTC) - timedelta(days=200)
    stale = watcher.start_execution(pipeline, start_date=old)
    watcher.end_execution(stale["id"], end_date=old + timedelta(minutes=1))
    watcher.start_execution(pipeline)
    dry = watcher.cleanup_logs(90, dry_run=True)
    assert (dry["dry_run"], dry["would_delete"]["pipeline_execution"]) == (True, 1)
    assert len(executions(live)) == 2
    done = watcher.cleanup_logs(90, batch_size=1)
    assert done["dry_run"] is False and done["deleted"] == dry["would_delete"]
    assert len(executions(live)) == 1
    with pytest.raises(ValidationError):
        watcher.cleanup_logs(89)


def lineage_event(event_type: str, run_id: str, seconds: int, **extra: Any) -> dict[str, Any]:
    return {
        "eventType": event_type,
        "eventTime": (datetime(2026, 3, 1, 2, tzinfo=UTC) + timedelta(seconds=seconds)).isoformat(),
        "producer": "https://example.com/watcher-client-test",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": run_id},
        "job": {"namespace": "airflow", "name": "orders.load"},
        **extra,
    }


def test_openlineage_events_go_one_at_a_time_or_in_a_batch(
    watcher: WatcherClient, live: LiveServer
) -> None:
    run_id = str(uuid.uuid4())
    started = watcher.send_lineage_event(lineage_event("START", run_id, 0))
    assert (started["event_type"], started["status"]) == ("START", "recorded")
    outputs = [
        {
            "namespace": "postgres://db:5432",
            "name": "shop.public.orders",
            "outputFacets": {"outputStatistics": {"rowCount": 12}},
        }
    ]
    ended = watcher.send_lineage_event(lineage_event("COMPLETE", run_id, 60, outputs=outputs))
    assert (ended["status"], ended["execution_id"]) == ("ended", started["execution_id"])
    execution = watcher.get_execution(started["execution_id"])
    assert (execution["completed_successfully"], execution["total_rows"]) == (True, 12)

    other = str(uuid.uuid4())
    good = watcher.send_lineage_batch(
        [lineage_event("START", other, 0), lineage_event("FAIL", other, 5)]
    )
    assert (good["accepted"], good["rejected"]) == (2, 0)
    partly = watcher.send_lineage_batch(  # answered 422, returned: the good event was stored
        [lineage_event("START", str(uuid.uuid4()), 0), {"eventType": "START"}]
    )
    assert (partly["accepted"], partly["rejected"]) == (1, 1)
    assert [r["status_code"] for r in partly["results"]] == [201, 422]
    assert partly["results"][1]["errors"]
    assert len(executions(live)) == 3
    with pytest.raises(ValidationError):
        watcher.send_lineage_batch([])  # the whole batch is refused: raised as usual
    with pytest.raises(ValidationError):
        watcher.send_lineage_event({"eventType": "START"})


async def test_the_async_client_has_the_same_routes(live: LiveServer) -> None:
    async with AsyncWatcherClient(live.url, env={}) as client:
        pipeline = (await client.create_pipeline("orders", "extract"))["id"]
        rule = await client.create_anomaly_rule(pipeline, "inserts")
        assert [r["id"] for r in await client.list_anomaly_rules(pipeline)] == [rule["id"]]
        assert (await client.check_missed_runs())["findings"] == []
        assert (await client.check_freshness())["findings"] == []
        assert (await client.check_timeliness(5))["lookback_minutes"] == 5
        assert (await client.cleanup_logs(90, dry_run=True))["dry_run"] is True
        run_id = str(uuid.uuid4())
        result = await client.send_lineage_batch(
            [lineage_event("START", run_id, 0), lineage_event("ABORT", run_id, 1)]
        )
        assert [r["status"] for r in result["results"]] == ["recorded", "ended"]
        assert (await client.send_lineage_event(lineage_event("OTHER", run_id, 2)))[
            "status"
        ] == "ignored"
        with pytest.raises(NotFound):
            await client.detect_anomalies(pipeline)  # no successful execution yet
        execution = await client.list_executions(pipeline_id=pipeline)
        assert execution == []
