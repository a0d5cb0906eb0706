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
    start,
)
from tests.conftest import LiveServer
from watcher import missed_runs
from watcher.missed_runs import judge, previous_fire_time, trigger

HOUR = timedelta(hours=1)


def check(client: httpx.Client) -> dict[str, Any]:
    r = client.post("/missed_runs")
    assert r.status_code == 200, r.text
    return r.json()


def by_pipeline(result: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {f["pipeline_id"]: f for f in result["findings"]}


def test_a_pipeline_that_does_not_start_is_a_finding_logged_once(
    client: httpx.Client, live: LiveServer
) -> None:
    pid = make_pipeline(client, "p", schedule="0 * * * *", schedule_grace_seconds=300)
    assert check(client)["findings"] == []  # nothing was expected since it was created
    live.clock.advance(2 * HOUR)
    now = live.clock.now()
    expected = (now - timedelta(seconds=300)).replace(minute=0, second=0, microsecond=0)
    first = by_pipeline(check(client))[pid]
    assert first["newly_logged"] is True and first["last_start"] is None
    assert datetime.fromisoformat(first["expected_at"]) == expected
    assert first["grace_seconds"] == 300 and first["used_child_config"] is True
    again = check(client)
    assert again["new_findings"] == 0 and by_pipeline(again)[pid]["newly_logged"] is False
    assert len(live.sql("SELECT * FROM missed_run_log")) == 1
    start(client, pid, now)
    assert check(client)["findings"] == []


def test_type_schedule_applies_and_mutes_inactive_skip(
    client: httpx.Client, live: LiveServer
) -> None:
    ids = {n: make_pipeline(client, n, type_name="nightly") for n in ("a", "b", "c")}
    patch_type(client, "nightly", schedule="30 2 * * *", schedule_timezone="Europe/Paris")
    patch_pipeline(client, "b", mute_timeliness_check=True)
    patch_pipeline(client, "c", active=False)
    live.sql("UPDATE pipeline SET created_at = created_at - interval '3 days'")
    found = by_pipeline(check(client))
    assert set(found) == {ids["a"]}
    finding = found[ids["a"]]
    assert finding["used_child_config"] is False
    assert finding["schedule_timezone"] == "Europe/Paris"
    expected = datetime.fromisoformat(finding["expected_at"])
    local = expected.astimezone(trigger("30 2 * * *", "Europe/Paris").timezone)
    assert (local.hour, local.minute) == (2, 30)


def test_pipelines_without_schedule_are_not_checked(client: httpx.Client) -> None:
    make_pipeline(client, "p", timeliness_number=1, timeliness_datepart="hour")
    assert check(client)["pipelines_checked"] == 0


def test_previous_fire_time_respects_the_time_zone_and_long_periods() -> None:
    paris = trigger("0 2 * * *", "Europe/Paris")
    at = datetime(2024, 6, 1, 1, 30, tzinfo=UTC)  # 03:30 in Paris (UTC+2)
    assert previous_fire_time(paris, at) == datetime(2024, 6, 1, 0, 0, tzinfo=UTC)
    winter = datetime(2024, 1, 10, 0, 30, tzinfo=UTC)  # 01:30 in Paris (UTC+1)
    assert previous_fire_time(paris, winter) == datetime(2024, 1, 9, 1, 0, tzinfo=UTC)
    yearly = trigger("0 0 1 1 *", "UTC")
    at = datetime(2024, 12, 31, 23, 59, tzinfo=UTC)
    assert previous_fire_time(yearly, at) == datetime(2024, 1, 1, tzinfo=UTC)
    every_minute = trigger("* * * * *", "UTC")
    exact = datetime(2024, 5, 5, 5, 5, tzinfo=UTC)
    assert previous_fire_time(every_minute, exact) == exact
    never = trigger("0 0 30 2 *", "UTC")  # February 30th
    assert previous_fire_time(never, at) is None


def row(last_start: datetime | None, grace: int = 600) -> dict[str, Any]:
    return {
        "id": 1,
        "pipeline_name": "p",
        "created_at": datetime(2024, 1, 1, tzinfo=UTC),
        "last_start": last_start,
        "schedule": "0 6 * * *",
        "schedule_timezone": None,
        "schedule_grace_seconds": grace,
    }


SIX = datetime(2024, 3, 10, 6, 0, tzinfo=UTC)


def test_the_grace_and_an_early_start_decide_a_miss() -> None:
    grace = timedelta(seconds=600)
    # At exactly expected + grace the run is due: missed with no start since.
    missed = judge(row(SIX - timedelta(days=1)), SIX + grace)
    assert missed is not None and missed.expected_at == SIX
    # A microsecond earlier, the run judged is the previous day's, which did start.
    assert judge(row(SIX - timedelta(days=1)), SIX + grace - timedelta(microseconds=1)) is None
    # Starting a little early (clock skew) counts; far earlier does not.
    assert judge(row(SIX - timedelta(seconds=30)), SIX + grace) is None
    assert judge(row(SIX - timedelta(minutes=5)), SIX + grace) is not None
    assert judge(row(SIX + timedelta(minutes=3)), SIX + grace) is None


def test_runs_expected_before_the_pipeline_existed_are_not_missed() -> None:
    young = row(None) | {"created_at": SIX + timedelta(seconds=1)}
    assert judge(young, SIX + timedelta(hours=1)) is None
    assert judge(row(None), SIX + timedelta(hours=1)) is not None


def test_thousands_of_missed_runs_are_logged_in_one_check(live: LiveServer) -> None:
    created = live.clock.now() - timedelta(days=1)
    bulk_pipelines(live, MANY, "schedule", "'*/15 * * * *'")
    live.sql("UPDATE pipeline SET created_at = :c", c=created)
    first = live.run(lambda: missed_runs.run(live.services))
    assert first["pipelines_checked"] == MANY and first["new_findings"] == MANY
    assert all(f["newly_logged"] for f in first["findings"])
    again = live.run(lambda: missed_runs.run(live.services))
    assert again["new_findings"] == 0 and len(again["findings"]) == MANY
    assert live.sql("SELECT count(*) AS n FROM missed_run_log")[0]["n"] == MANY


@pytest.mark.parametrize(
    ("schedule", "timezone", "reason"),
    [
        ("0 0 30 2 *", None, "never fires"),
        ("0 0 31 4,6 *", None, "never fires"),
        ("61 * * * *", None, "schedule"),
        ("0 6 * * *", "Mars/Olympus", "schedule"),
    ],
)
def test_a_schedule_that_cannot_fire_is_refused(
    client: httpx.Client, schedule: str, timezone: str | None, reason: str
) -> None:
    body = {"name": "p", "pipeline_type_name": "t", "schedule": schedule}
    if timezone:
        body["schedule_timezone"] = timezone
    r = client.post("/pipeline", json=body)
    assert r.status_code == 422, r.text
    assert reason in r.text
    leap_day = {"name": "p", "pipeline_type_name": "t", "schedule": "0 0 29 2 *"}  # does fire
    r = client.post("/pipeline", json=leap_day)
    assert r.status_code == 201, r.text
