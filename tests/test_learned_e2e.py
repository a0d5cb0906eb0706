"""Done when (issue 14): a pipeline created by OpenLineage events alone, with no rule of any
kind, gets a late-start alert in Slack once its learned start passes, an anomaly alert for a
50× volume run, and a stale alert when its target stops changing — through the real
Prometheus and Alertmanager with the repository's rules and templates (the stack fixtures of
tests/test_stack_e2e.py), Slack being a local HTTP receiver.

History: 20 daily runs sent as OpenLineage START/COMPLETE events with past eventTimes, at the
time of day 50 minutes before the test runs — so today's run was due 50 minutes ago, in wall
time, which is what Prometheus compares with. The learn job (leader, every second here) learns
them. Each successful run that wrote an output dataset is a data change (the pipeline's
`last_target_update` becomes its end, no code needed); staleness then comes from moving
Watcher's clock three days on (the lag is computed on Watcher's clock).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, start_live_server
from tests.conftest import test_settings as watcher_settings
from tests.test_stack_e2e import SlackStandIn, prometheus, replica, slack  # noqa: F401
from watcher.db.embedded import EmbeddedPostgres
from watcher.db.schema import metadata

pytestmark = pytest.mark.stack
PRODUCER = "https://github.com/apache/airflow/tree/providers-openlineage/2.1.0"
SCHEMA = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
JOB = {"namespace": "airflow", "name": "nightly_orders.load"}
NAME = "airflow.nightly_orders.load"
TIMEOUT = 60


@pytest.fixture(scope="module")
def watcher(postgres: EmbeddedPostgres) -> Iterator[LiveServer]:
    settings = watcher_settings(
        scheduler_enabled=True,
        metrics_snapshot_interval_seconds=1.0,
        leader_check_interval_seconds=1.0,
        learn_interval_seconds=1.0,
        learned_check_interval_seconds=1.0,
        leader_lock_id=0x57A7E2E1,
    )
    server = start_live_server(postgres.url, settings)
    tables = ", ".join(t.name for t in metadata.sorted_tables)
    server.sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    yield server
    server.sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    server.stop()


def event(kind: str, at: datetime, run_id: str, rows: int | None = None) -> dict[str, Any]:
    outputs = []
    if rows is not None:
        statistics = {"_producer": PRODUCER, "_schemaURL": SCHEMA, "rowCount": rows}
        outputs = [
            {
                "namespace": "postgres://warehouse:5432",
                "name": "analytics.public.orders",
                "outputFacets": {"outputStatistics": statistics},
            }
        ]
    return {
        "eventType": kind,
        "eventTime": at.isoformat(),
        "run": {"runId": run_id},
        "job": JOB,
        "producer": PRODUCER,
        "schemaURL": SCHEMA,
        "inputs": [],
        "outputs": outputs,
    }


def ol_run(http: httpx.Client, start: datetime, seconds: float, rows: int) -> None:
    run_id = str(uuid.uuid4())
    for body in (
        event("START", start, run_id),
        event("COMPLETE", start + timedelta(seconds=seconds), run_id, rows),
    ):
        response = http.post("/api/v1/lineage", json=body)
        assert response.is_success, response.text


def attachments(receiver: SlackStandIn, title: str) -> list[dict[str, Any]]:
    return [
        a
        for m in receiver.messages
        for a in m.get("attachments", [])
        if title in a.get("title", "")
    ]


def wait_for(receiver: SlackStandIn, title: str) -> dict[str, Any]:
    deadline = time.monotonic() + TIMEOUT
    while not (found := attachments(receiver, title)):
        if time.monotonic() > deadline:
            titles = [a.get("title") for m in receiver.messages for a in m.get("attachments", [])]
            pytest.fail(f"no {title!r} in Slack after {TIMEOUT}s; got {json.dumps(titles)}")
        time.sleep(0.5)
    return found[-1]


def learned(http: httpx.Client, pid: int) -> dict[str, Any]:
    deadline = time.monotonic() + TIMEOUT
    body: dict[str, Any] = http.get(f"/pipeline/{pid}/expectations").json()
    while body["cadence"] is None:
        if time.monotonic() > deadline:
            pytest.fail(f"not learned after {TIMEOUT}s: {body}")
        time.sleep(0.5)
        body = http.get(f"/pipeline/{pid}/expectations").json()
    return body


def test_a_pipeline_with_no_rules_alerts_late_anomalous_and_stale(
    watcher: LiveServer,
    prometheus: str,  # noqa: F811
    slack: SlackStandIn,  # noqa: F811
) -> None:
    wall = datetime.now(UTC).replace(microsecond=0)
    usual = wall - timedelta(minutes=50)
    with httpx.Client(base_url=watcher.url, timeout=30) as http:
        for day in range(20, 0, -1):
            jitter = timedelta(seconds=(day * 37) % 90)
            ol_run(http, usual - timedelta(days=day) + jitter, 600 + day, 1000 + 7 * day)
        [pipeline] = watcher.sql(
            "SELECT id, schedule, timeliness_number, freshness_number FROM pipeline"
            " WHERE name = :n",
            n=NAME,
        )
        assert pipeline["schedule"] is None and pipeline["timeliness_number"] is None
        assert pipeline["freshness_number"] is None
        assert watcher.sql("SELECT count(*) AS n FROM anomaly_detection_rule")[0]["n"] == 0
        last_end = watcher.sql("SELECT max(end_date) AS t FROM pipeline_execution")[0]["t"]
        [target] = watcher.sql(
            "SELECT last_target_update AS t FROM pipeline WHERE name = :n", n=NAME
        )
        assert target["t"] == last_end  # the runs' outputs alone set it

        body = learned(http, pipeline["id"])
        assert body["cadence"]["kind"] == "daily"

        # 1. Late: today's run was due at `usual` and nothing started.
        late = wait_for(slack, f"WatcherPipelineLateStart — {NAME}")
        assert late["title"].startswith("🟠 [FIRING:1]")
        text = late["text"]
        # The learned phase is the runs' median start, up to 90 s of jitter after `usual`.
        assert f"{body['cadence']['describe']}; nothing since " in text, text
        since = re.search(r"nothing since (\d\d):(\d\d) UTC", text)
        assert since is not None, text
        off = (int(since[1]) * 60 + int(since[2]) - usual.hour * 60 - usual.minute) % 1440
        assert min(off, 1440 - off) <= 2, (text, usual)  # minutes of the day, across midnight
        assert "• *Rule source:* learned from run history" in text

        # 2. A run 50× its usual volume: an anomaly (and the late start resolves).
        ol_run(http, wall - timedelta(seconds=30), 20, 50_000)
        anomaly = wait_for(slack, f"WatcherAnomalyDetected — {NAME}")
        assert "reported 50000 total rows; it usually reports" in anomaly["text"]
        assert "(learned)" in anomaly["text"]

        # 3. The target stops changing: three days on, longer than its usual longest gap.
        # Watcher was up all along: a heartbeat segment spans the simulated days, or the
        # clock jump would read as a blind window and hold the stale finding back.
        before = watcher.clock.now()
        watcher.clock.advance(timedelta(days=3))
        watcher.sql(
            "INSERT INTO ingest_heartbeat (replica, segment_start, beat_at, ingested)"
            " VALUES ('simulated-days', :s, :b, 0)",
            s=before - timedelta(minutes=1),
            b=watcher.clock.now() + timedelta(hours=1),
        )
        stale = wait_for(slack, f"WatcherPipelineNotFresh — {NAME}")
        assert "it usually changes at least every" in stale["text"]
        assert "• *Rule source:* learned from run history" in stale["text"]
    logged = {r["kind"] for r in watcher.sql("SELECT kind FROM learned_finding_log")}
    assert {"late_start", "anomaly", "stale"} <= logged
