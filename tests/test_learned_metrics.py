"""The learned gauges in /metrics: the band beside the value, only where learned is in force."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import LiveServer
from tests.test_learned import daily, to_0300
from watcher.metrics.routes import refresh_snapshot

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
P = {"pipeline": "daily", "pipeline_type": "etl", "rule_source": "learned"}


def scrape(client: httpx.Client, live: LiveServer) -> Samples:
    live.run(lambda: refresh_snapshot(live.services, live.services.telemetry.store))
    response = client.get("/metrics")
    assert response.status_code == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset((P | labels).items())


def named(samples: Samples, name: str) -> list[float]:
    return [v for (n, labels), v in samples.items() if n == name]


def test_a_learned_pipeline_exports_its_band_next_start_and_freshness(
    client: httpx.Client, live: LiveServer
) -> None:
    daily(client, live)
    s = scrape(client, live)
    low = s[key("watcher_pipeline_expected_duration_seconds", bound="lower")]
    high = s[key("watcher_pipeline_expected_duration_seconds", bound="upper")]
    assert low < 600 < high
    rows = key("watcher_pipeline_expected_rows", operation="total", bound="upper")
    assert s[rows] > 1000
    due = datetime.fromtimestamp(s[key("watcher_pipeline_expected_start_timestamp_seconds")], UTC)
    assert (due.hour, due.minute) == (2, 30)
    deadline = s[key("watcher_pipeline_expected_start_deadline_timestamp_seconds")]
    assert deadline > due.timestamp()
    [info] = [
        dict(labels)
        for (n, labels), _ in s.items()
        if n == "watcher_pipeline_expected_schedule_info"
    ]
    assert info["schedule"].startswith("usually starts at 02:3")
    assert s[key("watcher_pipeline_expected_freshness_seconds")] > 86_400
    labels = {"pipeline": "daily", "pipeline_type": "etl", "kind": "late_start"}
    assert s[("watcher_pipeline_learned_findings_total", frozenset(labels.items()))] == 0


def test_the_due_start_is_the_slot_after_the_latest_start(
    client: httpx.Client, live: LiveServer
) -> None:
    daily(client, live)
    before = scrape(client, live)[key("watcher_pipeline_expected_start_timestamp_seconds")]
    assert before < to_0300(live).timestamp()
    late = live.sql("SELECT max(start_date) AS t FROM pipeline_execution")[0]["t"]
    assert before - late.timestamp() > 23 * 3600


def test_configured_rules_take_the_learned_gauges_away(
    client: httpx.Client, live: LiveServer
) -> None:
    pid = daily(client, live, schedule="0 4 * * *", timeliness_number=1, timeliness_datepart="hour")
    s = scrape(client, live)
    assert named(s, "watcher_pipeline_expected_start_timestamp_seconds") == []
    assert named(s, "watcher_pipeline_expected_duration_seconds") == []
    assert named(s, "watcher_pipeline_expected_rows") != []  # no anomaly rule: still learned
    client.patch(f"/pipeline/{pid}/expectations", json={"opted_out": True})
    assert named(scrape(client, live), "watcher_pipeline_expected_rows") == []


def test_learned_findings_are_counted_by_kind(client: httpx.Client, live: LiveServer) -> None:
    daily(client, live)
    to_0300(live)
    assert client.post("/expectations/check", json={}).status_code == 200
    labels = {"pipeline": "daily", "pipeline_type": "etl", "kind": "late_start"}
    s = scrape(client, live)
    assert s[("watcher_pipeline_learned_findings_total", frozenset(labels.items()))] == 1


def test_relearned_expectations_replace_the_exported_band(
    client: httpx.Client, live: LiveServer
) -> None:
    pid = daily(client, live)
    upper = key("watcher_pipeline_expected_duration_seconds", bound="upper")
    medium = scrape(client, live)[upper]
    assert scrape(client, live)[upper] == medium  # the second refresh reads it from the cache
    r = client.patch(f"/pipeline/{pid}/expectations", json={"sensitivity": "low"})
    assert r.status_code == 200, r.text
    assert client.post("/expectations/learn").json()["pipelines_learned"] == 1
    assert scrape(client, live)[upper] > medium  # a wider band at low sensitivity
