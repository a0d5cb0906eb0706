from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.check_helpers import end, make_pipeline, start
from tests.conftest import LiveServer
from watcher.checks.cleanup import cutoff_for

DAY = timedelta(days=1)
TABLES = (
    "freshness_pipeline_log",
    "timeliness_pipeline_execution_log",
    "missed_run_log",
    "anomaly_detection_result",
    "pipeline_execution_closure",
    "pipeline_execution",
)
NOW = datetime.now(UTC)


def count(live: LiveServer, table: str) -> int:
    return int(live.sql(f"SELECT count(*) AS n FROM {table}")[0]["n"])


def seed_logs(
    live: LiveServer, pipeline_id: int, execution_id: int, at: datetime, rule: int
) -> None:
    live.sql(
        "INSERT INTO freshness_pipeline_log (pipeline_id, last_dml_timestamp,"
        " evaluation_timestamp, freshness_number, freshness_datepart, used_child_config,"
        " created_at) VALUES (:p, :t, :t, 1, 'day', true, :t)",
        p=pipeline_id,
        t=at,
    )
    live.sql(
        "INSERT INTO missed_run_log (pipeline_id, expected_at, detected_at, schedule,"
        " schedule_timezone, grace_seconds, used_child_config, created_at)"
        " VALUES (:p, :t, :t, '0 * * * *', 'UTC', 0, true, :t)",
        p=pipeline_id,
        t=at,
    )
    live.sql(
        "INSERT INTO timeliness_pipeline_execution_log (pipeline_execution_id, pipeline_id,"
        " duration_seconds, seconds_threshold, execution_status, timely_number, timely_datepart,"
        " used_child_config, created_at)"
        " VALUES (:e, :p, 10, 5, 'completed', 5, 'minute', true, :t)",
        e=execution_id,
        p=pipeline_id,
        t=at,
    )
    live.sql(
        "INSERT INTO anomaly_detection_result (pipeline_execution_id, rule_id, violation_value,"
        " z_score, historical_mean, std_deviation_value, z_threshold, threshold_min_value,"
        " threshold_max_value, baseline_count, is_anomaly, detected_at)"
        " VALUES (:e, :r, 1, 1, 1, 1, 3, 0, 4, 30, false, :t)",
        e=execution_id,
        r=rule,
        t=at,
    )


def seed(client: httpx.Client, live: LiveServer) -> dict[str, Any]:
    pid = make_pipeline(client, "p")
    rule = client.post(
        "/anomaly_detection_rule", json={"pipeline_id": pid, "metric_field": "inserts"}
    )
    rule_id = rule.json()["id"]
    old = NOW - 200 * DAY
    recent = NOW - 10 * DAY
    old_ids = []
    for i in range(5):
        eid = start(client, pid, old + i * timedelta(hours=1))
        end(client, eid, old + i * timedelta(hours=1) + timedelta(minutes=5))
        seed_logs(live, pid, eid, old + i * timedelta(hours=1), rule_id)
        old_ids.append(eid)
    # A nested run: an old parent with an old child and a child that started recently.
    parent = start(client, pid, old)
    old_child = client.post(
        "/start_pipeline_execution",
        json={"pipeline_id": pid, "start_date": (old + DAY).isoformat(), "parent_id": parent},
    ).json()["id"]
    recent_child = client.post(
        "/start_pipeline_execution",
        json={"pipeline_id": pid, "start_date": recent.isoformat(), "parent_id": parent},
    ).json()["id"]
    kept = start(client, pid, recent)
    seed_logs(live, pid, kept, recent, rule_id)
    return {"old": [*old_ids, parent, old_child], "recent_child": recent_child, "kept": kept}


def test_cleanup_deletes_old_history_in_batches_and_only_once(
    client: httpx.Client, live: LiveServer
) -> None:
    rows = seed(client, live)
    assert count(live, "pipeline_execution_closure") == 7 + 2 + 2  # self rows + parent links
    r = client.post("/log_cleanup", json={"retention_days": 90, "batch_size": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert datetime.fromisoformat(body["cutoff"]) == cutoff_for(live.clock.now(), 90)
    assert body["deleted"] == {
        "freshness_pipeline_log": 5,
        "timeliness_pipeline_execution_log": 5,
        "missed_run_log": 5,
        "anomaly_detection_result": 5,
        "learned_finding_log": 0,
        "expectation_feedback": 0,
        "pipeline_execution_closure": 7 + 1 + 1,  # old self rows, old→old, old parent→recent
        "pipeline_execution": 7,
    }
    remaining = live.sql("SELECT id, parent_id FROM pipeline_execution ORDER BY id")
    assert remaining == [
        {"id": rows["recent_child"], "parent_id": None},
        {"id": rows["kept"], "parent_id": None},
    ]
    closure = live.sql("SELECT ancestor_id, descendant_id FROM pipeline_execution_closure")
    assert sorted((c["ancestor_id"], c["descendant_id"]) for c in closure) == sorted(
        [(rows["recent_child"], rows["recent_child"]), (rows["kept"], rows["kept"])]
    )
    for table in ("freshness_pipeline_log", "missed_run_log", "anomaly_detection_result"):
        assert count(live, table) == 1
    again = client.post("/log_cleanup", json={"retention_days": 90}).json()
    assert set(again["deleted"].values()) == {0}


def test_a_dry_run_counts_what_cleanup_would_delete_and_deletes_nothing(
    client: httpx.Client, live: LiveServer
) -> None:
    seed(client, live)
    before = {t: count(live, t) for t in TABLES}
    r = client.post("/log_cleanup", json={"retention_days": 90, "dry_run": True})
    assert r.status_code == 200, r.text
    dry = r.json()
    assert (dry["status"], dry["dry_run"], dry["retention_days"]) == ("dry_run", True, 90)
    assert datetime.fromisoformat(dry["cutoff"]) == cutoff_for(live.clock.now(), 90)
    assert "deleted" not in dry
    assert {t: count(live, t) for t in TABLES} == before
    real = client.post("/log_cleanup", json={"retention_days": 90, "batch_size": 2}).json()
    assert real["dry_run"] is False
    assert dry["would_delete"] == real["deleted"]
    after = client.post("/log_cleanup", json={"retention_days": 90, "dry_run": True}).json()
    assert set(after["would_delete"].values()) == {0}


def test_a_dry_run_counts_rows_of_old_executions_that_are_not_old_themselves(
    client: httpx.Client, live: LiveServer
) -> None:
    # A log written recently about an execution that started before the cutoff goes with it.
    pid = make_pipeline(client, "p")
    rule = client.post(
        "/anomaly_detection_rule", json={"pipeline_id": pid, "metric_field": "inserts"}
    )
    old = start(client, pid, NOW - 200 * DAY)
    seed_logs(live, pid, old, NOW - DAY, rule.json()["id"])
    dry = client.post("/log_cleanup", json={"retention_days": 90, "dry_run": True}).json()
    assert dry["would_delete"] == {
        "freshness_pipeline_log": 0,
        "timeliness_pipeline_execution_log": 1,
        "missed_run_log": 0,
        "anomaly_detection_result": 1,
        "learned_finding_log": 0,
        "expectation_feedback": 0,
        "pipeline_execution_closure": 1,
        "pipeline_execution": 1,
    }
    real = client.post("/log_cleanup", json={"retention_days": 90}).json()
    assert real["deleted"] == dry["would_delete"]


def test_a_longer_retention_keeps_more(client: httpx.Client, live: LiveServer) -> None:
    seed(client, live)
    body = client.post("/log_cleanup", json={"retention_days": 365}).json()
    assert set(body["deleted"].values()) == {0}
    assert count(live, "pipeline_execution") == 9


def test_retention_under_ninety_days_is_refused(client: httpx.Client) -> None:
    assert client.post("/log_cleanup", json={"retention_days": 89}).status_code == 422
    assert client.post("/log_cleanup", json={}).status_code == 422
    r = client.post("/log_cleanup", json={"retention_days": 90, "batch_size": 0})
    assert r.status_code == 422


def test_the_cutoff_is_midnight_utc_retention_days_ago() -> None:
    at = datetime(2024, 6, 1, 23, 59, tzinfo=UTC)
    assert cutoff_for(at, 90) == datetime(2024, 3, 3, tzinfo=UTC)


def _exported_counters(live: LiveServer) -> dict[str, float | None]:
    """The per-pipeline counters of pipeline "p", as a fresh metrics snapshot exports them."""
    from watcher.metrics.routes import refresh_snapshot

    store = live.services.telemetry.store
    live.run(lambda: refresh_snapshot(live.services, store))
    value = store.registry.get_sample_value
    p = {"pipeline": "p", "pipeline_type": "etl"}
    return {
        "timeliness": value(
            "watcher_pipeline_timeliness_violations_total", p | {"status": "completed"}
        ),
        "freshness": value("watcher_pipeline_freshness_violations_total", p),
        "missed": value("watcher_pipeline_missed_runs_total", p),
        "anomalies": value("watcher_pipeline_anomalies_detected_total", p | {"metric": "inserts"}),
    }


def test_cleanup_never_makes_the_exported_counters_go_down(
    client: httpx.Client, live: LiveServer
) -> None:
    seed(client, live)
    live.sql("UPDATE anomaly_detection_result SET is_anomaly = true")  # 5 old + 1 recent
    before = _exported_counters(live)
    assert before == {"timeliness": 6, "freshness": 6, "missed": 6, "anomalies": 6}
    client.post("/log_cleanup", json={"retention_days": 90, "batch_size": 2}).raise_for_status()
    assert count(live, "missed_run_log") == 1  # the rows are gone, the counts are not
    assert _exported_counters(live) == before
    client.post("/log_cleanup", json={"retention_days": 90}).raise_for_status()
    assert _exported_counters(live) == before


LEARNED_FINDING = (
    "INSERT INTO learned_finding_log (pipeline_id, kind, metric, subject, pipeline_execution_id,"
    " detected_at, expected, message, created_at)"
    " VALUES (:p, :kind, :metric, :t, :e, :t, '{}', 'm', :t)"
)
FEEDBACK = (
    "INSERT INTO expectation_feedback (pipeline_execution_id, pipeline_id, verdict, created_at)"
    " VALUES (:e, :p, 'fine', :t)"
)


def _learned_counter(live: LiveServer) -> dict[str, float | None]:
    from watcher.metrics.routes import refresh_snapshot

    store = live.services.telemetry.store
    live.run(lambda: refresh_snapshot(live.services, store))
    p = {"pipeline": "p", "pipeline_type": "etl"}
    return {
        kind: store.registry.get_sample_value(
            "watcher_pipeline_learned_findings_total", p | {"kind": kind}
        )
        for kind in ("anomaly", "stale")
    }


def test_cleanup_prunes_learned_findings_and_feedback_and_counts_them(
    client: httpx.Client, live: LiveServer
) -> None:
    import json

    from tests.learned_helpers import learned_expectations

    pid = make_pipeline(client, "p")
    live.sql(
        "INSERT INTO pipeline_expectation (pipeline_id, expectations, trained_at)"
        " VALUES (:p, CAST(:x AS jsonb), :t)",
        p=pid,
        x=json.dumps(learned_expectations().to_json()),
        t=NOW,
    )
    old = start(client, pid, NOW - 200 * DAY)
    recent = start(client, pid, NOW - 10 * DAY)
    # A finding logged recently about an old run goes with the run; an old one with no run
    # by its own age; the recent run's finding and feedback stay.
    live.sql(LEARNED_FINDING, p=pid, kind="anomaly", metric="inserts", t=NOW - DAY, e=old)
    live.sql(LEARNED_FINDING, p=pid, kind="stale", metric="", t=NOW - 150 * DAY, e=None)
    live.sql(LEARNED_FINDING, p=pid, kind="anomaly", metric="inserts", t=NOW - 9 * DAY, e=recent)
    live.sql(FEEDBACK, p=pid, e=old, t=NOW - DAY)
    live.sql(FEEDBACK, p=pid, e=recent, t=NOW - DAY)
    before = _learned_counter(live)
    assert before == {"anomaly": 2, "stale": 1}
    dry = client.post("/log_cleanup", json={"retention_days": 90, "dry_run": True}).json()
    assert dry["would_delete"]["learned_finding_log"] == 2
    assert dry["would_delete"]["expectation_feedback"] == 1
    real = client.post("/log_cleanup", json={"retention_days": 90, "batch_size": 1}).json()
    assert real["deleted"] == dry["would_delete"]
    left = live.sql("SELECT pipeline_execution_id AS e FROM learned_finding_log")
    assert left == [{"e": recent}]
    feedback = live.sql("SELECT pipeline_execution_id AS e FROM expectation_feedback")
    assert feedback == [{"e": recent}]
    pruned = live.sql(
        "SELECT label, rows FROM pruned_log_count WHERE kind = 'learned' ORDER BY label"
    )
    assert pruned == [{"label": "anomaly", "rows": 1}, {"label": "stale", "rows": 1}]
    assert _learned_counter(live) == before  # the rows are gone, the counts are not
    again = client.post("/log_cleanup", json={"retention_days": 90}).json()
    assert set(again["deleted"].values()) == {0}
