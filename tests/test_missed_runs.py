from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.check_helpers import (
    MANY,
    between_quarter_hours,
    bulk_pipelines,
    make_pipeline,
    patch_pipeline,
    patch_type,
    start,
)
from tests.conftest import LiveServer
from watcher.checks import missed_runs
from watcher.checks.missed_runs import judge, previous_fire_time, trigger

HOUR = timedelta(hours=1)


def check(client: httpx.Client) -> dict[str, Any]:
    r = client.post("/missed_runs")
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


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


def test_a_muted_type_mutes_missed_runs_of_its_pipelines(
    client: httpx.Client, live: LiveServer
) -> None:
    muted = make_pipeline(client, "a", type_name="hourly")
    other = make_pipeline(client, "b", type_name="etl", schedule="0 * * * *")
    patch_type(client, "hourly", schedule="0 * * * *", mute_timeliness_check=True)
    live.sql("UPDATE pipeline SET created_at = created_at - interval '1 day'")
    assert set(by_pipeline(check(client))) == {other}
    patch_type(client, "hourly", mute_timeliness_check=False)
    assert set(by_pipeline(check(client))) == {muted, other}


def test_a_pipeline_schedule_overrides_its_types(client: httpx.Client, live: LiveServer) -> None:
    """The pipeline's cron comes with its own time zone (not the type's); the grace is the
    type's when the pipeline sets none."""
    own = make_pipeline(client, "own", type_name="nightly", schedule="15 * * * *")
    inherits = make_pipeline(client, "inherits", type_name="nightly")
    patch_type(
        client,
        "nightly",
        schedule="30 2 * * *",
        schedule_timezone="Europe/Paris",
        schedule_grace_seconds=120,
    )
    live.sql("UPDATE pipeline SET created_at = created_at - interval '3 days'")
    found = by_pipeline(check(client))
    assert set(found) == {own, inherits}
    mine = found[own]
    assert (mine["schedule"], mine["schedule_timezone"]) == ("15 * * * *", "UTC")
    assert mine["used_child_config"] is True and mine["grace_seconds"] == 120
    expected = datetime.fromisoformat(mine["expected_at"])
    assert expected.minute == 15 and expected.utcoffset() == timedelta(0)
    theirs = found[inherits]
    assert (theirs["schedule"], theirs["schedule_timezone"]) == ("30 2 * * *", "Europe/Paris")
    assert theirs["used_child_config"] is False


def align(live: LiveServer, period: timedelta) -> datetime:
    """Move the clock to halfway through a `period` counted from the epoch (so a boundary of
    every cron step that divides it) and return that period's start. Half a period of slack
    either side: the clock keeps running."""
    now = live.clock.now()
    into = (now - datetime(1970, 1, 1, tzinfo=UTC)) % period
    live.clock.advance(period / 2 - into)
    return now - into


def test_the_previous_minutes_start_does_not_count_for_the_next_minute(
    client: httpx.Client, live: LiveServer
) -> None:
    boundary = align(live, timedelta(minutes=5))  # now = boundary + 2:30
    minute = boundary + timedelta(minutes=2)  # the every-minute run judged now
    second = timedelta(seconds=1)
    # (cron, last start, the run found missed or None)
    cases = {
        "minute_on_time_for_the_previous": ("* * * * *", minute - 60 * second, minute),
        "minute_a_little_early": ("* * * * *", minute - 20 * second, None),
        "five_early_by_60_s": ("*/5 * * * *", boundary - 60 * second, None),
        "five_early_by_61_s": ("*/5 * * * *", boundary - 61 * second, boundary),
    }
    ids: dict[str, int] = {}
    for name, (cron, started, _) in cases.items():
        ids[name] = make_pipeline(client, name, schedule=cron)
        start(client, ids[name], started)
    live.sql("UPDATE pipeline SET created_at = created_at - interval '1 day'")
    found = by_pipeline(check(client))
    missed = {
        name: datetime.fromisoformat(found[pid]["expected_at"]) if pid in found else None
        for name, pid in ids.items()
    }
    assert missed == {name: expected for name, (_, _, expected) in cases.items()}


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
    assert previous_fire_time(every_minute, exact) == exact - timedelta(minutes=1)  # strictly
    assert previous_fire_time(every_minute, exact + timedelta(microseconds=1)) == exact
    never = trigger("0 0 30 2 *", "UTC")  # February 30th
    assert previous_fire_time(never, at) is None


def test_previous_fire_time_walks_through_the_repeated_autumn_hour() -> None:
    """On 27 October 2024 Paris lives 02:00–03:00 twice; stepping in wall-clock time lost
    the fold and the walk never ended (the check hung)."""
    paris = trigger("* * * * *", "Europe/Paris")

    def before(at: datetime) -> datetime | None:
        fire = previous_fire_time(paris, at)
        # in UTC: == across zones is False for a wall time that occurs twice (PEP 495)
        return None if fire is None else fire.astimezone(UTC)

    first = datetime(2024, 10, 27, 0, 10, 30, tzinfo=UTC)  # 02:10:30 CEST
    second = datetime(2024, 10, 27, 1, 10, 30, tzinfo=UTC)  # 02:10:30 CET
    assert before(first) == datetime(2024, 10, 27, 0, 10, tzinfo=UTC)
    assert before(second) == datetime(2024, 10, 27, 1, 10, tzinfo=UTC)
    spring = datetime(2024, 3, 31, 1, 0, 30, tzinfo=UTC)  # 03:00:30 CEST; 02:xx never was
    assert before(spring) == datetime(2024, 3, 31, 1, 0, tzinfo=UTC)
    zoned = previous_fire_time(paris, spring)  # 03:00 CEST, a zoned `at` as in the allowance
    assert zoned is not None and before(zoned) == datetime(2024, 3, 31, 0, 59, tzinfo=UTC)


def row(
    last_start: datetime | None, grace: int = 600, schedule: str = "0 6 * * *"
) -> dict[str, Any]:
    return {
        "id": 1,
        "pipeline_name": "p",
        "created_at": datetime(2024, 1, 1, tzinfo=UTC),
        "last_start": last_start,
        "schedule": schedule,
        "schedule_timezone": None,
        "schedule_grace_seconds": grace,
    }


SIX = datetime(2024, 3, 10, 6, 0, tzinfo=UTC)
MICRO = timedelta(microseconds=1)


def test_a_run_is_missed_only_once_its_grace_has_passed_strictly() -> None:
    grace = timedelta(seconds=600)
    yesterday = row(SIX - timedelta(days=1))
    # At exactly expected + grace the run is not due yet: the run judged is the previous
    # day's, which did start.
    assert judge(yesterday, SIX + grace) is None
    # A microsecond later it has passed by more than the grace: missed with no start since.
    missed = judge(yesterday, SIX + grace + MICRO)
    assert missed is not None and missed.expected_at == SIX
    without_grace = row(SIX - timedelta(days=1), grace=0)
    assert judge(without_grace, SIX) is None
    assert judge(without_grace, SIX + MICRO) is not None


def test_a_start_a_little_early_counts_for_the_run() -> None:
    due = SIX + timedelta(seconds=600) + MICRO
    assert judge(row(SIX - timedelta(seconds=30)), due) is None  # clock skew
    assert judge(row(SIX - timedelta(seconds=60)), due) is None
    assert judge(row(SIX - timedelta(seconds=61)), due) is not None
    assert judge(row(SIX - timedelta(minutes=5)), due) is not None
    assert judge(row(SIX + timedelta(minutes=3)), due) is None


def test_an_early_start_counts_for_at_most_half_the_gap_since_the_previous_run() -> None:
    """An every-minute cron's start at 10:00 belongs to the 10:00 run, not also to 10:01."""
    ten_one = datetime(2024, 3, 10, 10, 1, tzinfo=UTC)
    due = ten_one + MICRO

    def every_minute(start: datetime) -> dict[str, Any]:
        return row(start, grace=0, schedule="* * * * *")

    missed = judge(every_minute(ten_one - timedelta(minutes=1)), due)
    assert missed is not None and missed.expected_at == ten_one
    assert judge(every_minute(ten_one - timedelta(seconds=30)), due) is None
    assert judge(every_minute(ten_one - timedelta(seconds=30) - MICRO), due) is not None
    # Five minutes apart, the full 60 s still applies.
    ten_five = datetime(2024, 3, 10, 10, 5, tzinfo=UTC)

    def every_five(start: datetime) -> dict[str, Any]:
        return row(start, grace=0, schedule="*/5 * * * *")

    assert judge(every_five(ten_five - timedelta(seconds=60)), ten_five + MICRO) is None
    assert judge(every_five(ten_five - timedelta(seconds=61)), ten_five + MICRO) is not None
    # Uneven gaps: :01 comes a minute after :00, :00 fifty-nine minutes after :01.
    uneven = "0,1 * * * *"
    at_one = row(ten_one - timedelta(seconds=31), grace=0, schedule=uneven)
    assert judge(at_one, ten_one + MICRO) is not None
    ten = datetime(2024, 3, 10, 10, 0, tzinfo=UTC)
    at_ten = row(ten - timedelta(seconds=59), grace=0, schedule=uneven)
    assert judge(at_ten, ten + MICRO) is None


def test_runs_expected_before_the_pipeline_existed_are_not_missed() -> None:
    young = row(None) | {"created_at": SIX + timedelta(seconds=1)}
    assert judge(young, SIX + timedelta(hours=1)) is None
    assert judge(row(None), SIX + timedelta(hours=1)) is not None


def test_thousands_of_missed_runs_are_logged_in_one_check(live: LiveServer) -> None:
    between_quarter_hours(live.clock)  # the two checks must judge the same */15 run
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
