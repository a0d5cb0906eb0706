"""The checks against a real database when Watcher was blind: heartbeat segments are rows,
the checks run over HTTP, and evidence inside a window stays unknown until caught up."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.check_helpers import end, make_pipeline, run, start
from tests.conftest import LiveServer
from tests.test_anomalies import START, drain, make_rule, results, seed_history
from watcher.availability.heartbeat import CatchUpPolicy, Heartbeat, load_gate
from watcher.availability.windows import Window

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
CATCH_UP = CatchUpPolicy().catch_up  # the defaults the live server runs with (10 minutes)


def segment(live: LiveServer, replica: str, first: datetime, last: datetime) -> None:
    live.sql(
        "INSERT INTO ingest_heartbeat (replica, segment_start, beat_at, ingested)"
        " VALUES (:r, :s, :b, 0)"
        " ON CONFLICT (replica, segment_start) DO UPDATE SET beat_at = EXCLUDED.beat_at",
        r=replica,
        s=first,
        b=last,
    )


def blind(live: LiveServer, window_start: datetime, window_end: datetime) -> None:
    """Watcher beat for a day until `window_start`, then again from `window_end` to now."""
    segment(live, "old", window_start - 24 * HOUR, window_start)
    segment(live, "new", window_end, live.clock.now())


def beat_now(live: LiveServer, window_end: datetime) -> None:
    segment(live, "new", window_end, live.clock.now())


def post(client: httpx.Client, path: str, **body: Any) -> dict[str, Any]:
    r = client.post(path, json=body or None)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def suppressed(live: LiveServer, check: str) -> float:
    value = live.services.registry.get_sample_value(
        "watcher_checks_suppressed_total", {"check": check, "reason": "ingest_gap"}
    )
    return value or 0.0


def at_minutes_past_hour(live: LiveServer, minutes: float) -> datetime:
    """Move the clock to `minutes` past the next hour; return that hour."""
    now = live.clock.now()
    hour = now.replace(minute=0, second=0, microsecond=0) + HOUR
    live.clock.advance(hour + timedelta(minutes=minutes) - now)
    return hour


def test_a_run_due_while_watcher_was_blind_is_unknown_until_caught_up(
    client: httpx.Client, live: LiveServer
) -> None:
    hour = at_minutes_past_hour(live, 8)  # the 0 * * * * run is due at :05 (grace 5 min)
    late = make_pipeline(client, "late", schedule="0 * * * *", schedule_grace_seconds=300)
    stopped = make_pipeline(client, "stopped", schedule="0 * * * *", schedule_grace_seconds=300)
    live.sql("UPDATE pipeline SET created_at = created_at - interval '1 day'")
    window_end = hour + 2 * MINUTE
    blind(live, hour - 30 * timedelta(seconds=1), window_end)
    before = suppressed(live, "missed_runs")
    report = post(client, "/missed_runs")
    assert report["findings"] == [] and report["suppressed_findings"] == 2
    assert suppressed(live, "missed_runs") == before + 2
    # The late run is replayed with its own start time, inside the window.
    start(client, late, hour + 30 * timedelta(seconds=1))
    live.clock.advance(window_end + CATCH_UP - live.clock.now() - timedelta(seconds=1))
    beat_now(live, window_end)
    assert post(client, "/missed_runs")["findings"] == []  # one second before the catch-up
    live.clock.advance(2 * timedelta(seconds=1))
    beat_now(live, window_end)
    report = post(client, "/missed_runs")
    assert [f["pipeline_id"] for f in report["findings"]] == [stopped]
    assert report["suppressed_findings"] == 0
    assert [r["pipeline_id"] for r in live.sql("SELECT pipeline_id FROM missed_run_log")] == [
        stopped
    ]


def test_a_run_due_outside_the_window_is_reported_during_the_catch_up(
    client: httpx.Client, live: LiveServer
) -> None:
    hour = at_minutes_past_hour(live, 30)
    pid = make_pipeline(client, "p", schedule="0 * * * *", schedule_grace_seconds=60)
    live.sql("UPDATE pipeline SET created_at = created_at - interval '1 day'")
    blind(live, hour + 20 * MINUTE, hour + 25 * MINUTE)  # after the run was due (:01)
    report = post(client, "/missed_runs")
    assert [f["pipeline_id"] for f in report["findings"]] == [pid]


def test_staleness_across_the_window_waits_for_the_catch_up(
    client: httpx.Client, live: LiveServer
) -> None:
    now = live.clock.now()
    rule: dict[str, Any] = {"freshness_number": 1, "freshness_datepart": "hour"}
    replayed = make_pipeline(client, "replayed", **rule)
    stopped = make_pipeline(client, "stopped", **rule)
    for pid in (replayed, stopped):
        run(client, pid, now - 3 * HOUR, now - 2 * HOUR, inserts=5)
    window_end = now - 5 * MINUTE
    blind(live, now - 70 * MINUTE, window_end)  # stale since 60 minutes ago: inside
    report = post(client, "/freshness")
    assert report["findings"] == [] and report["suppressed_findings"] == 2
    # A run that ended inside the window arrives late, with its own times.
    run(client, replayed, now - 22 * MINUTE, now - 20 * MINUTE, inserts=1)
    assert live.sql("SELECT last_target_insert FROM pipeline WHERE id = :p", p=replayed) == [
        {"last_target_insert": now - 20 * MINUTE}
    ]
    live.clock.advance(CATCH_UP)
    beat_now(live, window_end)
    report = post(client, "/freshness")
    assert [f["pipeline_id"] for f in report["findings"]] == [stopped]
    # An hour later the replayed pipeline is stale again, and that staleness began after the
    # catch-up: it is reported like any other.
    live.clock.advance(60 * MINUTE)
    beat_now(live, window_end)
    found = {f["pipeline_id"] for f in post(client, "/freshness")["findings"]}
    assert found == {stopped, replayed}


def test_an_execution_running_across_the_window_is_not_overdue_until_caught_up(
    client: httpx.Client, live: LiveServer
) -> None:
    now = live.clock.now()
    rule: dict[str, Any] = {"timeliness_number": 1, "timeliness_datepart": "hour"}
    ends = make_pipeline(client, "ends", **rule)
    stuck = make_pipeline(client, "stuck", **rule)
    ended_late = start(client, ends, now - 70 * MINUTE)
    start(client, stuck, now - 70 * MINUTE)
    window_end = now - 5 * MINUTE
    blind(live, now - 15 * MINUTE, window_end)
    report = post(client, "/timeliness")
    assert report["findings"] == [] and report["suppressed_findings"] == 2
    end(client, ended_late, now - 12 * MINUTE)  # it ended in the window after 58 minutes
    live.clock.advance(CATCH_UP)
    beat_now(live, window_end)
    report = post(client, "/timeliness")
    assert [(f["pipeline_id"], f["execution_status"]) for f in report["findings"]] == [
        (stuck, "running")
    ]


def test_without_any_heartbeat_the_checks_judge_as_always(
    client: httpx.Client, live: LiveServer
) -> None:
    now = live.clock.now()
    pid = make_pipeline(client, "p", freshness_number=1, freshness_datepart="hour")
    run(client, pid, now - 3 * HOUR, now - 2 * HOUR, inserts=5)
    report = post(client, "/freshness")  # the scheduler (and heartbeat) is off here
    assert [f["pipeline_id"] for f in report["findings"]] == [pid]


def test_the_heartbeat_opens_a_new_segment_after_an_interruption(live: LiveServer) -> None:
    services = live.services
    heartbeat = Heartbeat(services.engine, services.clock, services.settings)
    live.run(heartbeat.beat)
    live.clock.advance(timedelta(seconds=5))
    heartbeat.pending = 3  # three executions ingested meanwhile
    live.run(heartbeat.beat)
    rows = live.sql("SELECT * FROM ingest_heartbeat")
    assert len(rows) == 1 and rows[0]["ingested"] == 3
    first_last_beat = rows[0]["beat_at"]
    # A minute without a successful beat (the process paused, its database away): the next
    # beat starts a new segment, and the hole between them is a window.
    live.clock.advance(timedelta(seconds=60))
    live.run(heartbeat.beat)
    rows = live.sql("SELECT * FROM ingest_heartbeat ORDER BY segment_start")
    assert len(rows) == 2 and heartbeat.pending == 0
    gate = heartbeat.gate
    assert gate is not None and gate.catching_up
    assert gate.last_window() == Window(first_last_beat, rows[1]["segment_start"])

    async def loaded() -> list[Window]:
        async with live.services.engine.begin() as conn:
            gate = await load_gate(conn, live.clock.now(), heartbeat.policy)
        return list(gate.windows)

    assert live.run(loaded)[-1] == Window(first_last_beat, rows[1]["segment_start"])


def test_a_late_run_is_judged_against_the_baseline_before_its_own_end(
    client: httpx.Client, live: LiveServer
) -> None:
    pid = make_pipeline(client, "p")
    make_rule(client, pid, z_threshold=2.0)
    values = [1000.0 + 10 * (i % 7) for i in range(25)]
    seed_history(live, pid, values)
    # Newer runs of the same hour already stored, with ten times the rows: had the late run
    # been judged against them, it would be an anomaly.
    for day in range(1, 11):
        at = START + timedelta(days=day)
        live.sql(
            "INSERT INTO pipeline_execution (pipeline_id, start_date, end_date,"
            " completed_successfully, duration_seconds, total_rows, hour_recorded,"
            " date_recorded, anomaly_checked_at) VALUES (:p, :s, :e, true, 600, 10000, :h,"
            " :d, :s)",
            p=pid,
            s=at,
            e=at + timedelta(minutes=10),
            h=at.hour,
            d=at.date(),
        )
    eid = run(client, pid, START, START + timedelta(minutes=10), total_rows=1010)
    drain(live)
    [result] = results(live, eid)
    assert result["baseline_count"] == 25
    assert result["historical_mean"] == pytest.approx(sum(values) / len(values))
    assert result["is_anomaly"] is False


def test_the_availability_families_are_exported_under_their_names(live: LiveServer) -> None:
    registry = live.services.registry
    assert registry.get_sample_value("watcher_ingest_heartbeat_age_seconds") is not None
    assert registry.get_sample_value("watcher_ingest_gap_seconds") == 0  # no beat here
    assert registry.get_sample_value("watcher_ingest_catching_up") == 0
    assert registry.get_sample_value("watcher_ingest_catch_up_seconds") == 600
    names = {m.name for m in registry.collect()}
    assert "watcher_checks_suppressed" in names  # samples: watcher_checks_suppressed_total


def test_a_learned_late_start_inside_a_blind_window_waits_for_the_catch_up(
    client: httpx.Client, live: LiveServer
) -> None:
    from tests.test_learned import check as learned_check
    from tests.test_learned import daily, to_0300

    pid = daily(client, live)
    late_at = to_0300(live)  # 02:30 run 30 min late — but Watcher was blind 02:20–02:55
    blind(live, late_at - 40 * MINUTE, late_at - 5 * MINUTE)
    held = learned_check(client)
    assert held["findings"] == [] and held["suppressed_findings"] == 1
    assert live.sql("SELECT count(*) AS n FROM learned_finding_log")[0]["n"] == 0
    live.clock.advance(CATCH_UP)  # caught up: nothing was replayed, so it truly is late
    beat_now(live, late_at - 5 * MINUTE)
    [late] = learned_check(client)["findings"]
    assert late["pipeline_id"] == pid and late["kind"] == "late_start" and late["newly_logged"]
