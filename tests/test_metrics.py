"""Metrics: pure rule/watermark helpers, the snapshot collector on a fresh registry, the
event-fed families, and `/metrics` on a live Watcher over a real PostgreSQL."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event

from tests.conftest import LiveServer
from tests.factories import end, make_pipeline, start
from watcher.checks.rules import Rule
from watcher.clock import FrozenClock
from watcher.events import Events, ExecutionEnded, ExecutionStarted, JobFinished, RequestFinished
from watcher.metrics.collectors import Metrics, SchedulerCollector, SnapshotCollector, SnapshotStore
from watcher.metrics.routes import refresh_snapshot
from watcher.metrics.snapshot import (
    AnomalyState,
    LastExecution,
    PipelineState,
    Snapshot,
    build_state,
    parse_watermark,
)
from watcher.scheduler import Scheduler

NOW = datetime(2024, 3, 10, 12, 0, tzinfo=UTC)
P = {"pipeline": "orders", "pipeline_type": "etl"}


# --- pure helpers ----------------------------------------------------------------------------


def _row(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"id": 1, "name": "orders", "pipeline_type": "etl", "watermark": None}
    row |= dict.fromkeys(("last_target_insert", "last_target_update", "last_target_soft_delete"))
    for prefix in ("", "type_"):
        for check in ("freshness", "timeliness"):
            row |= {
                f"{prefix}{check}_number": None,
                f"{prefix}{check}_datepart": None,
                f"{prefix}mute_{check}_check": False,
            }
    return row | overrides


def _build(row: dict[str, Any], running: tuple[int, datetime | None] = (0, None)) -> PipelineState:
    return build_state(
        row,
        last=None,
        running=running,
        timeliness_violations={},
        freshness_violations=0,
        missed_runs=0,
        anomalies=(),
        now=NOW,
    )


def test_state_takes_the_child_rule_over_the_parent() -> None:
    state = _build(
        _row(
            freshness_number=2,
            freshness_datepart="hour",
            type_freshness_number=1,
            type_freshness_datepart="day",
            type_timeliness_number=1,
            type_timeliness_datepart="month",
        ),
        running=(1, datetime(2024, 1, 31, tzinfo=UTC)),
    )
    assert state.freshness == Rule(2, "hour", True)
    assert state.timeliness == Rule(1, "month", False)
    # A month from the oldest running start (Jan 31 → Feb 29): calendar-aware.
    assert state.timeliness_threshold_seconds == 29 * 86_400


def test_a_mute_on_the_type_removes_the_rule() -> None:
    state = _build(
        _row(freshness_number=2, freshness_datepart="hour", type_mute_freshness_check=True)
    )
    assert state.freshness is None


def test_last_dml_is_the_latest_of_insert_update_soft_delete() -> None:
    state = _build(
        _row(
            last_target_insert=NOW - timedelta(days=2), last_target_update=NOW - timedelta(hours=1)
        )
    )
    assert state.last_dml == NOW - timedelta(hours=1)


@pytest.mark.parametrize(
    ("watermark", "expected"),
    [
        ("42", (42.0, None)),
        (" 1.5 ", (1.5, None)),
        ("2024-01-02", (None, datetime(2024, 1, 2, tzinfo=UTC).timestamp())),
        ("2024-01-02T03:04:05Z", (None, datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp())),
        ("batch-7", (None, None)),
        ("nan", (None, None)),
        (None, (None, None)),
    ],
)
def test_watermark_exported_only_when_it_parses(
    watermark: str | None, expected: tuple[float | None, float | None]
) -> None:
    assert parse_watermark(watermark) == expected


# --- the snapshot collector ------------------------------------------------------------------


def _state(**overrides: Any) -> PipelineState:
    base: dict[str, Any] = {
        "name": "orders",
        "pipeline_type": "etl",
        "last_execution": LastExecution(
            success=False,
            start_date=NOW - timedelta(hours=2),
            end_date=NOW - timedelta(hours=1),
            duration_seconds=3600.0,
            rows={"insert": 10, "update": 0, "soft_delete": None, "total": 25},
            throughput=25 / 3600,
        ),
        "last_dml": NOW - timedelta(hours=3),
        "freshness": Rule(2, "hour", True),
        "timeliness": Rule(30, "minute", False),
        "timeliness_threshold_seconds": 1800.0,
        "running": 2,
        "oldest_running_start": NOW - timedelta(minutes=45),
        "watermark": "2024-03-01",
        "anomalies": (AnomalyState("inserts", 3.0, -4.5, 2), AnomalyState("updates", 2.5, None, 0)),
        "timeliness_violations": {"running": 1, "completed": 3},
        "freshness_violations": 4,
        "missed_runs": 5,
    }
    return PipelineState(**(base | overrides))


@pytest.fixture
def rendered() -> Iterator[tuple[CollectorRegistry, SnapshotStore, FrozenClock]]:
    store, clock = SnapshotStore(), FrozenClock(NOW)
    registry = store.registry  # the per-pipeline families; add the live ones for one view
    registry.register(SnapshotCollector(store, clock.now, lambda: (3, 7, 20)))
    yield registry, store, clock


def test_collector_renders_a_pipeline(
    rendered: tuple[CollectorRegistry, SnapshotStore, FrozenClock],
) -> None:
    registry, store, _ = rendered
    store.replace(Snapshot(NOW - timedelta(seconds=4), 0.25, (_state(),), inactive_pipelines=2))
    value = registry.get_sample_value
    assert value("watcher_pipeline_active", P) == 1
    assert value("watcher_pipeline_last_execution_success", P) == 0
    assert value("watcher_pipeline_last_execution_duration_seconds", P) == 3600
    assert value("watcher_pipeline_last_execution_end_timestamp_seconds", P) == (
        (NOW - timedelta(hours=1)).timestamp()
    )
    assert value("watcher_pipeline_last_execution_rows", P | {"operation": "total"}) == 25
    assert value("watcher_pipeline_last_execution_rows", P | {"operation": "soft_delete"}) is None
    assert value("watcher_pipeline_freshness_lag_seconds", P) == 3 * 3600 - 4  # as of snapshot
    assert value("watcher_pipeline_freshness_threshold_seconds", P | {"rule_source": "child"}) == (
        7200
    )
    assert value("watcher_pipeline_running_executions", P) == 2
    assert value("watcher_pipeline_oldest_running_execution_age_seconds", P) == 45 * 60 - 4
    assert (
        value("watcher_pipeline_timeliness_threshold_seconds", P | {"rule_source": "parent"})
        == 1800
    )
    assert value("watcher_pipeline_watermark_timestamp_seconds", P) == (
        datetime(2024, 3, 1, tzinfo=UTC).timestamp()
    )
    assert value("watcher_pipeline_watermark", P) is None
    assert value("watcher_pipeline_anomaly_z_score", P | {"metric": "inserts"}) == -4.5
    assert value("watcher_pipeline_anomaly_z_score", P | {"metric": "updates"}) is None
    assert value("watcher_pipeline_anomaly_z_threshold", P | {"metric": "updates"}) == 2.5
    assert value("watcher_pipeline_anomalies_detected_total", P | {"metric": "inserts"}) == 2
    assert value("watcher_pipeline_timeliness_violations_total", P | {"status": "completed"}) == 3
    assert value("watcher_pipeline_freshness_violations_total", P) == 4
    assert value("watcher_pipeline_missed_runs_total", P) == 5
    assert value("watcher_pipelines", {"status": "inactive"}) == 2
    assert value("watcher_metrics_snapshot_age_seconds") == 4
    assert value("watcher_db_pool_connections", {"status": "in_use"}) == 3
    assert value("watcher_db_pool_max_connections") == 20


def test_lag_is_as_of_the_snapshot_and_its_age_says_how_old(
    rendered: tuple[CollectorRegistry, SnapshotStore, FrozenClock],
) -> None:
    registry, store, clock = rendered
    store.replace(Snapshot(NOW, 0.1, (_state(),)))
    clock.advance(timedelta(minutes=10))
    assert registry.get_sample_value("watcher_pipeline_freshness_lag_seconds", P) == 3 * 3600
    assert registry.get_sample_value("watcher_metrics_snapshot_age_seconds") == 600


def test_the_encoded_pipeline_families_are_cached_until_the_next_refresh() -> None:
    store = SnapshotStore()
    store.replace(Snapshot(NOW, 0.1, (_state(),)))
    first = store.encoded(False)
    assert store.encoded(False) is first
    assert store.encoded(True) is not first and store.encoded(True).endswith(b"# EOF\n")
    store.replace(Snapshot(NOW, 0.1, (_state(name="customers"),)))
    assert b'pipeline="customers"' in store.encoded(False)
    assert b'pipeline="orders"' not in store.encoded(False)


def _tricky_states() -> tuple[PipelineState, ...]:
    no_history = PipelineState(name='we"ird\\name\nx', pipeline_type="typé ✓")
    big = _state(
        name="big",
        watermark="12345678901.5",
        anomalies=(AnomalyState("throughput", 3.0, float("inf"), 10**7),),
        running=0,
        oldest_running_start=None,
    )
    return (_state(), no_history, big, _state(name="other", last_execution=None))


@pytest.mark.parametrize("openmetrics", [False, True], ids=["text", "openmetrics"])
def test_direct_encoding_is_byte_for_byte_prometheus_clients(openmetrics: bool) -> None:
    from prometheus_client.openmetrics.exposition import generate_latest as generate_om

    from watcher.metrics.exposition import encode_snapshot

    store = SnapshotStore()
    snapshot = Snapshot(NOW, 0.1, _tricky_states(), inactive_pipelines=3)
    store.replace(snapshot)
    reference = (generate_om if openmetrics else generate_latest)(store.registry)
    assert encode_snapshot(snapshot, openmetrics) == reference


def test_muted_pipeline_has_no_threshold_so_no_alert_can_fire(
    rendered: tuple[CollectorRegistry, SnapshotStore, FrozenClock],
) -> None:
    registry, store, _ = rendered
    store.replace(Snapshot(NOW, 0.1, (_state(freshness=None, timeliness=None),)))
    for source in ("child", "parent"):
        labels = P | {"rule_source": source}
        assert (
            registry.get_sample_value("watcher_pipeline_freshness_threshold_seconds", labels)
            is None
        )
    assert registry.get_sample_value("watcher_pipeline_freshness_lag_seconds", P) is not None


def test_pipeline_series_disappear_with_the_pipeline(
    rendered: tuple[CollectorRegistry, SnapshotStore, FrozenClock],
) -> None:
    registry, store, _ = rendered
    store.replace(Snapshot(NOW, 0.1, (_state(), _state(name="customers"))))
    other = P | {"pipeline": "customers"}
    assert registry.get_sample_value("watcher_pipeline_active", other) == 1
    store.replace(Snapshot(NOW, 0.1, (_state(),), inactive_pipelines=1))
    assert registry.get_sample_value("watcher_pipeline_active", other) is None
    assert registry.get_sample_value("watcher_pipeline_missed_runs_total", other) is None
    assert registry.get_sample_value("watcher_pipeline_active", P) == 1


def test_no_snapshot_yet_renders_only_the_pool(
    rendered: tuple[CollectorRegistry, SnapshotStore, FrozenClock],
) -> None:
    registry, _, _ = rendered
    names = {m.name for m in registry.collect()}
    assert names == {"watcher_db_pool_connections", "watcher_db_pool_max_connections"}


# --- event-fed families ----------------------------------------------------------------------


def test_events_feed_the_request_path_families() -> None:
    registry, events = CollectorRegistry(), Events()
    metrics = Metrics(registry)
    events.subscribe(ExecutionStarted, metrics.execution_started)
    events.subscribe(ExecutionEnded, metrics.execution_ended)
    events.subscribe(RequestFinished, metrics.request_finished)
    events.emit(ExecutionStarted(1, 1, "orders", "etl", NOW))
    events.emit(ExecutionEnded(1, 1, "orders", "etl", True, NOW, 42.0, 5, 0, None, 9, 0.2))
    events.emit(
        ExecutionEnded(2, 1, "orders", "etl", False, NOW, 7.0, None, None, None, None, None)
    )
    events.emit(RequestFinished("POST", "/pipeline/{id}", 201, 0.03))
    value = registry.get_sample_value
    etl = {"pipeline_type": "etl"}
    assert value("watcher_executions_started_total", P) == 1
    assert value("watcher_executions_finished_total", P | {"status": "success"}) == 1
    assert value("watcher_executions_finished_total", P | {"status": "failure"}) == 1
    assert value("watcher_execution_duration_seconds_count", etl) == 2  # by type only
    assert value("watcher_execution_duration_seconds_count", P) is None
    assert value("watcher_execution_duration_seconds_bucket", etl | {"le": "15.0"}) == 1
    assert value("watcher_execution_rows_total", P | {"operation": "insert"}) == 5
    assert value("watcher_execution_rows_total", P | {"operation": "total"}) == 9
    assert value("watcher_execution_rows_total", P | {"operation": "update"}) is None
    route = {"method": "POST", "route": "/pipeline/{id}", "status": "201"}
    assert value("watcher_http_request_duration_seconds_count", route) == 1


def _ran(events: Events, pipeline: str, execution_id: int = 1) -> None:
    events.emit(ExecutionStarted(execution_id, 1, pipeline, "etl", NOW))
    events.emit(
        ExecutionEnded(execution_id, 1, pipeline, "etl", True, NOW, 30.0, 3, None, None, 3, 0.1)
    )


def _pipelines_counted(registry: CollectorRegistry) -> set[str]:
    names = {"watcher_executions_started", "watcher_executions_finished", "watcher_execution_rows"}
    return {
        s.labels["pipeline"]
        for family in registry.collect()
        if family.name in names
        for s in family.samples
    }


def test_execution_counters_of_a_pipeline_that_left_the_snapshot_disappear() -> None:
    registry, events = CollectorRegistry(), Events()
    metrics = Metrics(registry)
    events.subscribe(ExecutionStarted, metrics.execution_started)
    events.subscribe(ExecutionEnded, metrics.execution_ended)
    _ran(events, "orders")
    _ran(events, "customers", 2)
    metrics.retain_pipelines({"orders", "customers"})
    assert _pipelines_counted(registry) == {"orders", "customers"}
    metrics.retain_pipelines({"orders"})  # customers deactivated or deleted
    assert _pipelines_counted(registry) == {"orders"}
    value = registry.get_sample_value
    assert value("watcher_executions_finished_total", P | {"status": "success"}) == 1
    assert value("watcher_execution_rows_total", P | {"operation": "total"}) == 3
    # The histogram is by type: both pipelines' observations stay.
    assert value("watcher_execution_duration_seconds_count", {"pipeline_type": "etl"}) == 2
    # A pipeline that comes back starts its series again from zero.
    _ran(events, "customers", 3)
    customers = {"pipeline": "customers", "pipeline_type": "etl"}
    assert value("watcher_executions_started_total", customers) == 1


def test_a_pipeline_counted_while_the_snapshot_loaded_waits_one_more_refresh() -> None:
    registry, events = CollectorRegistry(), Events()
    metrics = Metrics(registry)
    events.subscribe(ExecutionStarted, metrics.execution_started)
    events.subscribe(ExecutionEnded, metrics.execution_ended)
    metrics.retain_pipelines({"orders"})
    _ran(events, "brand_new")  # created and run after this snapshot was read
    metrics.retain_pipelines({"orders"})
    assert _pipelines_counted(registry) == {"brand_new"}
    metrics.retain_pipelines({"orders"})  # still absent, and nothing new: gone
    assert _pipelines_counted(registry) == set()


def test_scheduler_families_cover_every_registered_job() -> None:
    registry, events = CollectorRegistry(), Events()
    scheduler = Scheduler(
        "postgresql://unused", lock_id=1, check_seconds=5, clock=FrozenClock(NOW), events=events
    )

    async def job() -> None:
        return None

    scheduler.add_job("freshness", job, seconds=300)
    scheduler.add_job("metrics_snapshot", job, seconds=5, leader_only=False)
    metrics = Metrics(registry)
    events.subscribe(JobFinished, metrics.job_finished)
    registry.register(SchedulerCollector(scheduler, metrics, started_at=1000.0))
    events.emit(JobFinished("metrics_snapshot", True, 0.02, NOW))
    events.emit(JobFinished("freshness", False, 1.5, NOW))
    value = registry.get_sample_value
    assert value("watcher_scheduler_leader") == 0
    scheduler.is_leader = True
    assert value("watcher_scheduler_leader") == 1
    fresh, snap = {"job": "freshness"}, {"job": "metrics_snapshot"}
    assert value("watcher_scheduler_job_interval_seconds", fresh | {"leader_only": "true"}) == 300
    assert value("watcher_scheduler_job_last_success_timestamp_seconds", snap) == NOW.timestamp()
    # Never succeeded: reports the process start, so "time since success" keeps growing.
    assert value("watcher_scheduler_job_last_success_timestamp_seconds", fresh) == 1000.0
    assert value("watcher_scheduler_job_runs_total", fresh) == 1
    assert value("watcher_scheduler_job_failures_total", fresh) == 1
    assert value("watcher_scheduler_job_failures_total", snap) == 0


# --- /metrics on a live Watcher --------------------------------------------------------------


def _scrape(client: httpx.Client) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def _key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


@pytest.mark.parametrize("openmetrics", [False, True], ids=["text", "openmetrics"])
def test_execution_counters_encode_byte_for_byte_as_prometheus_client(openmetrics: bool) -> None:
    from prometheus_client.openmetrics.exposition import generate_latest as generate_om

    from watcher.metrics.collectors import PipelineCounters

    counters = PipelineCounters()
    counters.inc(counters.started, ('we"ird\\name\nx', "typé ✓"))
    counters.inc(counters.finished, ("orders", "etl", "success"), 3)
    counters.inc(counters.rows, ("orders", "etl", "insert"), 1e21)
    counters.inc(counters.rows, ("orders", "etl", "total"), 12345678.5)
    registry = CollectorRegistry()
    registry.register(counters)
    reference = (generate_om if openmetrics else generate_latest)(registry)
    assert counters.encode(openmetrics) == reference.removesuffix(b"# EOF\n")
    counters.inc(counters.finished, ("orders", "etl", "success"))  # values move, prefixes stay
    assert b'status="success"} 4.0' in counters.encode(openmetrics)


def test_a_scrape_has_every_registry_family_exactly_once(
    live: LiveServer, client: httpx.Client
) -> None:
    make_pipeline(client, "orders")
    live.run(lambda: refresh_snapshot(live.services, live.services.telemetry.store))
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om

    om = client.get("/metrics", headers={"Accept": "application/openmetrics-text"}).text
    scraped = [f.name for f in parse_om(om)]  # type: ignore[no-untyped-call]  # the OpenMetrics parser knows `_created`
    assert len(scraped) == len(set(scraped))
    store = live.services.telemetry.store
    families = [*live.services.registry.collect(), *store.registry.collect()]
    assert set(scraped) == {f.name for f in families}


def test_metrics_negotiates_text_and_openmetrics(client: httpx.Client) -> None:
    text = client.get("/metrics")
    assert text.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE watcher_executions_started_total counter" in text.text
    om = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    assert om.text.endswith("# EOF\n")


def test_snapshot_reflects_the_database_and_drops_inactive_pipelines(
    live: LiveServer, client: httpx.Client
) -> None:
    client.post(
        "/pipeline_type",
        json={"name": "etl", "freshness_number": 1, "freshness_datepart": "day"},
    )
    orders = make_pipeline(
        client,
        "orders",
        pipeline_type_name="etl",
        next_watermark="100",
        timeliness_number=30,
        timeliness_datepart="minute",
    )
    other = make_pipeline(client, "customers", pipeline_type_name="etl")
    now = datetime.now(UTC)
    ran = start(client, other["id"], start_date=(now - timedelta(minutes=1)).isoformat())
    assert end(client, ran, inserts=1, total_rows=1, end_date=now.isoformat()).status_code == 204
    done = start(client, orders["id"], start_date=(now - timedelta(minutes=20)).isoformat())
    response = end(client, done, inserts=7, total_rows=7, end_date=now.isoformat())
    assert response.status_code == 204, response.text
    start(client, orders["id"], start_date=(now - timedelta(minutes=5)).isoformat())
    live.run(lambda: refresh_snapshot(live.services, live.services.telemetry.store))

    samples = _scrape(client)
    o = {"pipeline": "orders", "pipeline_type": "etl"}
    assert samples[_key("watcher_pipeline_last_execution_success", **o)] == 1
    assert samples[_key("watcher_pipeline_last_execution_duration_seconds", **o)] == 1200
    assert samples[_key("watcher_pipeline_last_execution_rows", **o, operation="insert")] == 7
    assert samples[_key("watcher_pipeline_watermark", **o)] == 100
    assert samples[_key("watcher_pipeline_running_executions", **o)] == 1
    day = _key("watcher_pipeline_freshness_threshold_seconds", **o, rule_source="parent")
    assert samples[day] == 86_400
    minutes = _key("watcher_pipeline_timeliness_threshold_seconds", **o, rule_source="child")
    assert samples[minutes] == 1800
    assert _key("watcher_pipeline_active", pipeline="customers", pipeline_type="etl") in samples

    response = client.patch("/pipeline", json={"id": other["id"], "active": False})
    assert response.status_code == 200, response.text
    live.run(lambda: refresh_snapshot(live.services, live.services.telemetry.store))
    samples = _scrape(client)
    assert not any(labels and ("pipeline", "customers") in labels for _, labels in samples)
    assert samples[_key("watcher_pipelines", status="inactive")] == 1


def test_a_scrape_runs_no_database_statement(live: LiveServer, client: httpx.Client) -> None:
    make_pipeline(client, "orders")
    live.run(lambda: refresh_snapshot(live.services, live.services.telemetry.store))
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(str(args[2]))

    engine = live.services.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        assert "watcher_pipeline_active" in client.get("/metrics").text
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert statements == []


def test_the_readme_says_which_jobs_run_on_every_replica(live: LiveServer, repo_root: Path) -> None:
    everywhere = [n for n, job in live.services.scheduler.jobs.items() if not job.leader_only]
    assert sorted(everywhere) == ["incidents_metrics", "ingest_heartbeat", "metrics_snapshot"]
    readme = (repo_root / "docs" / "operations.md").read_text()
    section = readme.split("\n## Several replicas\n", 1)[1].split("\n## ", 1)[0]
    leader_only = section.split("run on exactly one", 1)[0]
    assert "snapshot" not in leader_only
    assert "The `metrics_snapshot` job is the exception: it runs on **every** replica" in section
    assert "`ingest_heartbeat`" in section  # every replica records that it is ingesting
    assert "`incidents_metrics`" in section  # and exports the open incidents


def test_ended_executions_count_after_commit(live: LiveServer, client: httpx.Client) -> None:
    value = live.services.registry.get_sample_value
    labels = {"pipeline": "orders", "pipeline_type": "extraction", "status": "failure"}
    before = value("watcher_executions_finished_total", labels) or 0
    pipeline = make_pipeline(client, "orders")
    assert end(client, start(client, pipeline["id"]), ok=False).status_code == 204
    assert value("watcher_executions_finished_total", labels) == before + 1


def test_scrape_of_a_thousand_pipelines_stays_fast(live: LiveServer, client: httpx.Client) -> None:
    seed_pipelines(live, 1000)
    live.run(lambda: refresh_snapshot(live.services, live.services.telemetry.store))
    current = live.services.telemetry.store.current
    assert current is not None and len(current.pipelines) == 1000
    timings = []
    for _ in range(7):
        started = time.perf_counter()
        assert client.get("/metrics").status_code == 200
        timings.append(time.perf_counter() - started)
    assert statistics.median(timings) < 1.0, timings


def seed_pipelines(live: LiveServer, count: int) -> None:
    """`count` pipelines with rules, one ended and one running execution each, in bulk SQL."""
    live.sql(
        "INSERT INTO pipeline_type (name, freshness_number, freshness_datepart, "
        "timeliness_number, timeliness_datepart) VALUES ('bulk', 1, 'day', 1, 'hour') "
        "ON CONFLICT DO NOTHING"
    )
    live.sql(
        "INSERT INTO pipeline (name, pipeline_type_id, watermark, last_target_insert) "
        "SELECT 'bulk_' || g, (SELECT id FROM pipeline_type WHERE name = 'bulk'), g::text, "
        "now() - interval '2 hours' FROM generate_series(1, :n) AS g",
        n=count,
    )
    live.sql(
        "INSERT INTO pipeline_execution (pipeline_id, start_date, end_date, duration_seconds, "
        "completed_successfully, inserts, total_rows, throughput, hour_recorded, date_recorded) "
        "SELECT id, now() - interval '3 hours', now() - interval '2 hours', 3600, true, 10, 10, "
        "10 / 3600.0, 9, current_date FROM pipeline WHERE name LIKE 'bulk\\_%'"
    )
    live.sql(
        "INSERT INTO pipeline_execution (pipeline_id, start_date, hour_recorded, date_recorded) "
        "SELECT id, now() - interval '10 minutes', 11, current_date FROM pipeline "
        "WHERE name LIKE 'bulk\\_%'"
    )
    live.sql(
        "INSERT INTO anomaly_detection_rule (pipeline_id, metric_field) "
        "SELECT id, 'total_rows' FROM pipeline WHERE name LIKE 'bulk\\_%'"
    )


def test_the_snapshot_exports_the_latest_of_several_ended_executions(
    live: LiveServer, client: httpx.Client
) -> None:
    pid = make_pipeline(client, "orders")["id"]
    base = NOW - timedelta(days=2)
    for hours, ok, rows in ((0, True, 10), (5, False, 20), (3, True, 30)):  # not in order
        eid = start(client, pid, start_date=(base + timedelta(hours=hours)).isoformat())
        ended = base + timedelta(hours=hours, minutes=10)
        end(client, eid, ok, end_date=ended.isoformat(), total_rows=rows).raise_for_status()
    store = live.services.telemetry.store
    live.run(lambda: refresh_snapshot(live.services, store))
    value = store.registry.get_sample_value
    labels = {"pipeline": "orders", "pipeline_type": "extraction"}
    assert value("watcher_pipeline_last_execution_success", labels) == 0  # the 5-hour one
    assert value("watcher_pipeline_last_execution_rows", labels | {"operation": "total"}) == 20
