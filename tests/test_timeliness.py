from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.check_helpers import (
    MANY,
    bulk_pipelines,
    make_pipeline,
    patch_pipeline,
    patch_type,
    run,
    start,
)
from tests.conftest import LiveServer
from watcher.checks import timeliness
from watcher.checks.timeliness import judge

MINUTE = timedelta(minutes=1)


def now() -> datetime:
    return datetime.now(UTC)


def check(client: httpx.Client, **body: Any) -> dict[str, Any]:
    r = client.post("/timeliness", json=body)
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    assert result["status"] == "completed"
    return result


def by_execution(result: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {f["pipeline_execution_id"]: f for f in result["findings"]}


def test_a_running_execution_past_its_threshold_is_overdue_once(
    client: httpx.Client, live: LiveServer
) -> None:
    pid = make_pipeline(client, "p", timeliness_number=5, timeliness_datepart="minute")
    eid = start(client, pid, now() - 2 * MINUTE)
    assert check(client)["findings"] == []
    live.clock.advance(4 * MINUTE)
    first = by_execution(check(client))[eid]
    assert first["execution_status"] == "running" and first["newly_logged"] is True
    assert first["seconds_threshold"] == 300 and first["duration_seconds"] > 300
    assert first["used_child_config"] is True
    again = check(client)
    assert again["new_findings"] == 0 and by_execution(again)[eid]["newly_logged"] is False
    rows = live.sql("SELECT * FROM timeliness_pipeline_execution_log")
    assert len(rows) == 1
    assert rows[0]["execution_status"] == "running" and rows[0]["timely_datepart"] == "minute"


def test_completed_late_is_overdue_on_time_and_failed_are_not(client: httpx.Client) -> None:
    pid = make_pipeline(client, "p", timeliness_number=10, timeliness_datepart="minute")
    t = now() - 30 * MINUTE
    late = run(client, pid, t, t + 11 * MINUTE)
    on_time = run(client, pid, t, t + 10 * MINUTE)  # end == deadline: not past it
    failed = run(client, pid, t, t + 20 * MINUTE, ok=False)
    found = by_execution(check(client))
    assert set(found) == {late}
    assert found[late]["execution_status"] == "completed"
    assert found[late]["duration_seconds"] == 660
    assert on_time not in found and failed not in found


def test_the_type_rule_applies_when_the_pipeline_has_none(client: httpx.Client) -> None:
    pid = make_pipeline(client, "p", type_name="batch")
    patch_type(client, "batch", timeliness_number=1, timeliness_datepart="hour")
    t = now() - 59 * MINUTE
    late = run(client, pid, t, t + 61 * MINUTE)
    finding = by_execution(check(client))[late]
    assert finding["used_child_config"] is False and finding["timely_datepart"] == "hour"
    assert finding["seconds_threshold"] == 3600


def test_mutes_and_inactive_pipelines_are_skipped(client: httpx.Client) -> None:
    rule: dict[str, Any] = {"timeliness_number": 5, "timeliness_datepart": "minute"}
    muted_type = make_pipeline(client, "a", type_name="quiet", **rule)
    patch_type(client, "quiet", mute_timeliness_check=True)
    muted = make_pipeline(client, "b", **rule)
    patch_pipeline(client, "b", mute_timeliness_check=True)
    inactive = make_pipeline(client, "c", **rule)
    patch_pipeline(client, "c", active=False)
    loud = make_pipeline(client, "d", **rule)
    for pid in (muted_type, muted, inactive, loud):
        start(client, pid, now() - 10 * MINUTE)
    found = check(client)["findings"]
    assert [f["pipeline_id"] for f in found] == [loud]


def test_finished_executions_outside_the_lookback_are_not_judged_but_running_ones_are(
    client: httpx.Client,
) -> None:
    pid = make_pipeline(client, "p", timeliness_number=1, timeliness_datepart="hour")
    t = now() - 5 * 60 * MINUTE
    old_late = run(client, pid, t, t + 2 * 60 * MINUTE)
    stuck = start(client, pid, t)
    found = by_execution(check(client, lookback_minutes=60))
    assert set(found) == {stuck}
    assert old_late in by_execution(check(client, lookback_minutes=6 * 60))


def test_lookback_below_five_minutes_is_refused(client: httpx.Client) -> None:
    assert client.post("/timeliness", json={"lookback_minutes": 4}).status_code == 422


def row(start: datetime, end: datetime | None, number: int, datepart: str) -> dict[str, Any]:
    return {
        "id": 1,
        "pipeline_id": 1,
        "pipeline_name": "p",
        "start_date": start,
        "end_date": end,
        "completed_successfully": None if end is None else True,
        "timeliness_number": number,
        "timeliness_datepart": datepart,
    }


JAN31 = datetime(2024, 1, 31, 12, tzinfo=UTC)
FEB29 = datetime(2024, 2, 29, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("number", "datepart", "deadline"),
    [
        (30, "minute", JAN31 + 30 * MINUTE),
        (3, "hour", JAN31 + timedelta(hours=3)),
        (2, "day", JAN31 + timedelta(days=2)),
        (1, "week", JAN31 + timedelta(weeks=1)),
        (1, "month", FEB29),
        (1, "year", datetime(2025, 1, 31, 12, tzinfo=UTC)),
    ],
)
def test_the_deadline_instant_itself_is_on_time(
    number: int, datepart: str, deadline: datetime
) -> None:
    tick = timedelta(microseconds=1)
    assert judge(row(JAN31, None, number, datepart), deadline) is None
    running = judge(row(JAN31, None, number, datepart), deadline + tick)
    assert running is not None and running.execution_status == "running"
    assert judge(row(JAN31, deadline, number, datepart), deadline + timedelta(days=400)) is None
    done = judge(row(JAN31, deadline + tick, number, datepart), deadline + tick)
    assert done is not None and done.execution_status == "completed"
    assert done.seconds_threshold == (deadline - JAN31).total_seconds()


def test_thousands_of_overdue_executions_are_logged_in_one_check(live: LiveServer) -> None:
    bulk_pipelines(live, MANY, "timeliness_number, timeliness_datepart", "5, 'minute'")
    live.sql(
        "INSERT INTO pipeline_execution (pipeline_id, start_date, hour_recorded, date_recorded)"
        " SELECT id, CAST(:s AS timestamptz), 0, CAST(:s AS timestamptz)::date FROM pipeline",
        s=live.clock.now() - timedelta(hours=1),
    )
    first = live.run(lambda: timeliness.run(live.services, 60))
    assert first["new_findings"] == MANY
    assert {f["execution_status"] for f in first["findings"]} == {"running"}
    again = live.run(lambda: timeliness.run(live.services, 60))
    assert again["new_findings"] == 0 and len(again["findings"]) == MANY


def test_month_rules_at_the_edge_of_the_shortest_month(client: httpx.Client) -> None:
    """Jan 31 + 1 month is Feb 28: a run of 28 days and a second is late, and the SQL
    prefilter (no month is shorter than 28 days) keeps it for Python to decide."""
    pid = make_pipeline(client, "p", timeliness_number=1, timeliness_datepart="month")
    jan31, jan30 = datetime(2026, 1, 31, 12, tzinfo=UTC), datetime(2026, 1, 30, 12, tzinfo=UTC)
    feb28 = datetime(2026, 2, 28, 12, tzinfo=UTC)
    late = run(client, pid, jan31, feb28 + timedelta(seconds=1))
    later = run(client, pid, jan30, feb28 + timedelta(seconds=1))
    run(client, pid, jan31, feb28 - timedelta(seconds=1))  # on time by two seconds
    mar1 = datetime(2026, 3, 1, 12, tzinfo=UTC)
    run(client, pid, mar1, mar1 + timedelta(days=30))  # a month from March 1st is 31 days
    lookback = int((now() - jan30).total_seconds() // 60) + 10
    found = by_execution(check(client, lookback_minutes=lookback))
    assert set(found) == {late, later}
    assert found[late]["seconds_threshold"] == 28 * 86_400
    assert found[later]["seconds_threshold"] == 29 * 86_400


def test_the_largest_rule_numbers_are_checked_without_overflow(client: httpx.Client) -> None:
    """`timeliness_number` × seconds overflowed PostgreSQL's integer in the candidate query
    (a 500 for POST /timeliness, and the scheduled check failing for every pipeline)."""
    pid = make_pipeline(client, "endless", timeliness_number=2**31 - 1, timeliness_datepart="year")
    late = make_pipeline(client, "late", timeliness_number=1, timeliness_datepart="minute")
    start(client, pid, now() - 10 * MINUTE)
    overdue = start(client, late, now() - 10 * MINUTE)
    assert set(by_execution(check(client))) == {overdue}
