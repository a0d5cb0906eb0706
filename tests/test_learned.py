"""Learned expectations end to end over HTTP: the learn job, the API, feedback, the check."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx

from tests.check_helpers import make_pipeline
from tests.conftest import LiveServer
from tests.learned_helpers import daily_starts, seed

DAY = timedelta(days=1)


def learn(client: httpx.Client) -> dict[str, Any]:
    r = client.post("/expectations/learn")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def check(client: httpx.Client) -> dict[str, Any]:
    r = client.post("/expectations/check", json={})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def expectations(client: httpx.Client, pid: int) -> dict[str, Any]:
    r = client.get(f"/pipeline/{pid}/expectations")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def kinds(report: dict[str, Any]) -> list[str]:
    return sorted(f["kind"] for f in report["findings"])


def to_0300(live: LiveServer) -> datetime:
    """Move the clock to the next 03:00 UTC (02:30 runs are then 30 min late)."""
    now = live.clock.now()
    target = now.replace(hour=3, minute=0, second=0, microsecond=0)
    if target <= now:
        target += DAY
    live.clock.advance(target - now)
    return target


def daily(client: httpx.Client, live: LiveServer, name: str = "daily", **rules: Any) -> int:
    """A pipeline with 20 days of runs at 02:30 UTC, learned; the clock just before 02:30."""
    pid = make_pipeline(client, name, **rules)
    at = to_0300(live) - timedelta(minutes=40)  # 02:20: today's run not due yet
    live.clock.advance(at - live.clock.now())
    seed(live, pid, daily_starts(at, 20))
    learn(client)
    return pid


def test_an_unknown_pipeline_has_no_expectations(client: httpx.Client) -> None:
    r = client.get("/pipeline/999/expectations")
    assert r.status_code == 404 and "pipeline 999" in r.json()["detail"]


def test_a_new_pipeline_is_learning_and_says_how_much_history_it_needs(
    client: httpx.Client, live: LiveServer
) -> None:
    pid = make_pipeline(client, "fresh")
    seed(live, pid, daily_starts(live.clock.now(), 3))
    learn(client)
    body = expectations(client, pid)
    assert body["state"] == "learning"
    assert body["history"]["runs"] == 3 and body["history"]["runs_needed"] == 5
    assert 4.9 < body["history"]["days_needed"] <= 5.1
    assert body["cadence"] is None and any("need 8 runs" in n for n in body["notes"])


def test_twenty_daily_runs_teach_the_schedule_and_the_bands(
    client: httpx.Client, live: LiveServer
) -> None:
    pid = daily(client, live)
    body = expectations(client, pid)
    assert body["state"] == "learned" and body["sensitivity"] == "medium"
    assert body["cadence"]["kind"] == "daily"
    assert body["cadence"]["describe"].startswith("usually starts at 02:3")
    metrics = {b["metric"]: b for b in body["bands"]}
    assert metrics["total_rows"]["low"] < 1000 < metrics["total_rows"]["high"]
    assert body["freshness"] is not None


def test_the_learn_job_relearns_only_pipelines_with_new_runs(
    client: httpx.Client, live: LiveServer
) -> None:
    pid = daily(client, live)
    make_pipeline(client, "never_ran")
    assert learn(client)["pipelines_learned"] == 0
    seed(live, pid, [live.clock.now() - timedelta(minutes=1)])
    assert learn(client)["pipelines_learned"] == 1
    assert learn(client)["pipelines_learned"] == 0


def test_a_late_daily_run_is_found_once_with_what_was_expected(
    client: httpx.Client, live: LiveServer
) -> None:
    pid = daily(client, live)
    assert check(client)["findings"] == []
    to_0300(live)
    first = check(client)
    [late] = first["findings"]
    assert late["pipeline_id"] == pid and late["kind"] == "late_start"
    assert late["rule_source"] == "learned" and late["newly_logged"] is True
    assert late["message"].startswith("usually starts at 02:3")
    assert "nothing since 02:30" in late["message"]
    again = check(client)
    assert again["new_findings"] == 0 and again["findings"][0]["newly_logged"] is False
    logged = live.sql("SELECT kind, message FROM learned_finding_log")
    assert [r["kind"] for r in logged] == ["late_start"]


def test_a_configured_schedule_wins_over_the_learned_one(
    client: httpx.Client, live: LiveServer
) -> None:
    daily(client, live, schedule="0 4 * * *")
    to_0300(live)
    assert kinds(check(client)) == []


def test_muted_timeliness_mutes_learned_late_starts_too(
    client: httpx.Client, live: LiveServer
) -> None:
    daily(client, live, mute_timeliness_check=True)
    to_0300(live)
    assert "late_start" not in kinds(check(client))


def test_a_run_with_fifty_times_the_rows_is_anomalous_and_flagged(
    client: httpx.Client, live: LiveServer
) -> None:
    pid = daily(client, live)
    seed(live, pid, [live.clock.now() - timedelta(minutes=15)], rows=50_000)
    report = check(client)
    anomalies = [f for f in report["findings"] if f["kind"] == "anomaly"]
    assert {f["metric"] for f in anomalies} == {"total_rows", "inserts"}
    assert all(f["expected"]["direction"] == "high" for f in anomalies)
    flags = live.sql(
        "SELECT anomaly_flags FROM pipeline_execution WHERE id = :id",
        id=anomalies[0]["pipeline_execution_id"],
    )
    assert flags[0]["anomaly_flags"] == {"total_rows": True, "inserts": True}


def test_a_configured_anomaly_rule_wins_for_its_metric(
    client: httpx.Client, live: LiveServer
) -> None:
    pid = daily(client, live)
    r = client.post("/anomaly_detection_rule", json={"pipeline_id": pid, "metric_field": "inserts"})
    assert r.status_code in (200, 201), r.text
    seed(live, pid, [live.clock.now() - timedelta(minutes=15)], rows=50_000)
    metrics = [f["metric"] for f in check(client)["findings"] if f["kind"] == "anomaly"]
    assert metrics == ["total_rows"]


def test_targets_that_stop_changing_are_stale(client: httpx.Client, live: LiveServer) -> None:
    pid = daily(client, live)
    live.sql(
        "UPDATE pipeline SET last_target_insert = :t WHERE id = :pid",
        t=live.clock.now() - 4 * DAY,
        pid=pid,
    )
    stale = [f for f in check(client)["findings"] if f["kind"] == "stale"]
    assert len(stale) == 1 and "usually changes at least every" in stale[0]["message"]
    patch = client.patch(
        "/pipeline", json={"name": "daily", "freshness_number": 5, "freshness_datepart": "day"}
    )
    assert patch.status_code == 200, patch.text
    assert "stale" not in kinds(check(client))  # a configured freshness rule wins


def test_sensitivity_and_opt_out_per_pipeline_and_per_type(
    client: httpx.Client, live: LiveServer
) -> None:
    pid = daily(client, live)
    r = client.patch(f"/pipeline/{pid}/expectations", json={"sensitivity": "high"})
    assert r.status_code == 200 and r.json()["sensitivity"] == "high"
    assert r.json()["sensitivity_source"] == "pipeline"
    assert learn(client)["pipelines_learned"] == 1  # relearned with the new setting
    r = client.patch(f"/pipeline/{pid}/expectations", json={"opted_out": True})
    assert r.json()["state"] == "opted_out" and r.json()["sensitivity"] == "high"
    to_0300(live)
    assert check(client)["findings"] == []
    client.patch(f"/pipeline/{pid}/expectations", json={"opted_out": False})
    assert kinds(check(client)) == ["late_start"]
    type_id = live.sql("SELECT pipeline_type_id FROM pipeline WHERE id = :id", id=pid)[0]
    r = client.patch(
        f"/pipeline_type/{type_id['pipeline_type_id']}/expectations", json={"opted_out": True}
    )
    assert r.status_code == 200 and r.json()["opted_out"] is True
    assert check(client)["findings"] == []
    assert expectations(client, pid)["state"] == "opted_out"


def test_settings_bodies_are_validated_naming_the_field(
    client: httpx.Client, live: LiveServer
) -> None:
    pid = make_pipeline(client, "p")
    r = client.patch(f"/pipeline/{pid}/expectations", json={"sensitivity": "extreme"})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "sensitivity"]
    r = client.patch(f"/pipeline/{pid}/expectations", json={})
    assert r.status_code == 422 and "sensitivity" in r.text
    r = client.patch("/pipeline/999/expectations", json={"opted_out": True})
    assert r.status_code == 404
    r = client.patch("/pipeline_type/999/expectations", json={"opted_out": True})
    assert r.status_code == 404
    assert live.sql("SELECT count(*) AS n FROM pipeline_expectation")[0]["n"] == 0


def test_feedback_marks_a_flagged_run_fine_and_it_is_trained_on(
    client: httpx.Client, live: LiveServer
) -> None:
    pid = daily(client, live)
    seed(live, pid, [live.clock.now() - timedelta(minutes=15)], rows=50_000)
    [finding, *_] = [f for f in check(client)["findings"] if f["kind"] == "anomaly"]
    eid = finding["pipeline_execution_id"]
    r = client.post(f"/pipeline/{pid}/expectations/feedback", json={"pipeline_execution_id": eid})
    assert r.status_code == 200 and r.json()["verdict"] == "fine"
    rows = live.sql(
        "SELECT verdict FROM expectation_feedback WHERE pipeline_execution_id = :e", e=eid
    )
    assert rows == [{"verdict": "fine"}]
    assert learn(client)["pipelines_learned"] == 1  # feedback makes it relearn


def test_feedback_on_a_run_of_another_pipeline_is_not_found(
    client: httpx.Client, live: LiveServer
) -> None:
    pid = daily(client, live)
    other = make_pipeline(client, "other")
    seed(live, other, [live.clock.now() - DAY])
    eid = live.sql("SELECT id FROM pipeline_execution WHERE pipeline_id = :p", p=other)[0]["id"]
    r = client.post(f"/pipeline/{pid}/expectations/feedback", json={"pipeline_execution_id": eid})
    assert r.status_code == 404
    r = client.post(
        f"/pipeline/{pid}/expectations/feedback",
        json={"pipeline_execution_id": eid, "verdict": "meh"},
    )
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "verdict"]
    r = client.post(f"/pipeline/{pid}/expectations/feedback", json={})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == [
        "body",
        "pipeline_execution_id",
    ]
    assert live.sql("SELECT count(*) AS n FROM expectation_feedback")[0]["n"] == 0


def test_retrain_starts_a_new_normal(client: httpx.Client, live: LiveServer) -> None:
    pid = daily(client, live)
    r = client.post(f"/pipeline/{pid}/expectations/retrain")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["state"] == "learning" and body["history"]["runs"] == 0
    assert datetime.fromisoformat(body["retrain_from"]) <= live.clock.now()
    learn(client)
    assert expectations(client, pid)["cadence"] is None
    to_0300(live)
    assert check(client)["findings"] == []


def learned_of(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["learned_findings"]
    assert all(f["rule_source"] == "learned" for f in found)
    return found


def test_the_configured_check_routes_carry_the_learned_findings_of_their_kind(
    client: httpx.Client, live: LiveServer
) -> None:
    pid = daily(client, live)
    assert learned_of(client.post("/missed_runs")) == []
    to_0300(live)
    missed = client.post("/missed_runs")
    assert missed.json()["findings"] == []  # no cron: the configured check has nothing
    [late] = learned_of(missed)
    assert late["kind"] == "late_start" and late["newly_logged"] is True
    assert [f["kind"] for f in learned_of(client.post("/timeliness", json={}))] == []
    live.sql(
        "UPDATE pipeline SET last_target_insert = :t WHERE id = :pid",
        t=live.clock.now() - 4 * DAY,
        pid=pid,
    )
    [stale] = learned_of(client.post("/freshness"))
    assert stale["kind"] == "stale" and stale["pipeline_id"] == pid


def test_a_run_longer_than_its_learned_duration_is_overdue_in_the_timeliness_route(
    client: httpx.Client, live: LiveServer
) -> None:
    pid = daily(client, live)
    start = live.clock.now() - timedelta(hours=3)
    r = client.post(
        "/start_pipeline_execution", json={"pipeline_id": pid, "start_date": start.isoformat()}
    )
    assert r.status_code == 201, r.text
    [overdue] = learned_of(client.post("/timeliness", json={}))
    assert overdue["kind"] == "overdue" and overdue["pipeline_execution_id"] == r.json()["id"]
    assert overdue["message"].startswith("running for 3.0 h; usually takes 10 min")
    client.patch(
        "/pipeline", json={"id": pid, "timeliness_number": 5, "timeliness_datepart": "hour"}
    )
    assert learned_of(client.post("/timeliness", json={})) == []  # the configured rule wins


def test_detect_reports_the_learned_anomalies_of_the_latest_run(
    client: httpx.Client, live: LiveServer
) -> None:
    pid = daily(client, live)
    seed(live, pid, [live.clock.now() - timedelta(minutes=15)], rows=50_000)
    response = client.post(f"/anomaly_detection/detect/{pid}")
    assert response.json()["results"] == []  # no configured rule
    metrics = sorted(f["metric"] for f in learned_of(response))
    assert metrics == ["inserts", "total_rows"]
