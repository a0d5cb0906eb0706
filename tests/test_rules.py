from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from watcher.checks.rules import NEVER, Rule, add_datepart, resolve, resolve_schedule, split_row

T0 = datetime(2024, 1, 31, 10, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("number", "datepart", "expected"),
    [
        (5, "minute", T0 + timedelta(minutes=5)),
        (2, "hour", T0 + timedelta(hours=2)),
        (1, "day", T0 + timedelta(days=1)),
        (1, "week", T0 + timedelta(days=7)),
        (1, "month", datetime(2024, 2, 29, 10, 30, tzinfo=UTC)),  # leap February, clamped
        (13, "month", datetime(2025, 2, 28, 10, 30, tzinfo=UTC)),
        (11, "month", datetime(2024, 12, 31, 10, 30, tzinfo=UTC)),
        (1, "year", datetime(2025, 1, 31, 10, 30, tzinfo=UTC)),
    ],
)
def test_it_adds_dateparts_on_the_calendar(number: int, datepart: str, expected: datetime) -> None:
    assert add_datepart(T0, number, datepart) == expected


def test_a_year_from_a_leap_day_ends_on_february_28() -> None:
    leap = datetime(2024, 2, 29, tzinfo=UTC)
    assert add_datepart(leap, 1, "year") == datetime(2025, 2, 28, tzinfo=UTC)
    assert add_datepart(leap, 4, "year") == datetime(2028, 2, 29, tzinfo=UTC)


def test_a_month_is_as_long_as_the_calendar_says() -> None:
    rule = Rule(1, "month", True)
    assert rule.seconds_from(datetime(2024, 2, 1, tzinfo=UTC)) == 29 * 86_400
    assert rule.seconds_from(datetime(2023, 2, 1, tzinfo=UTC)) == 28 * 86_400
    assert rule.seconds_from(datetime(2024, 3, 1, tzinfo=UTC)) == 31 * 86_400


def test_an_unknown_datepart_is_refused() -> None:
    with pytest.raises(ValueError, match="fortnight"):
        add_datepart(T0, 1, "fortnight")


CHILD = {"timeliness_number": 2, "timeliness_datepart": "hour"}
PARENT = {"timeliness_number": 1, "timeliness_datepart": "day"}


def test_the_pipeline_rule_wins_over_the_type_rule() -> None:
    assert resolve("timeliness", CHILD, PARENT) == Rule(2, "hour", True)


def test_the_type_rule_applies_when_the_pipeline_has_none() -> None:
    assert resolve("timeliness", {}, PARENT) == Rule(1, "day", False)


def test_no_rule_anywhere_skips() -> None:
    assert resolve("timeliness", {}, {}) is None
    assert resolve("freshness", CHILD, PARENT) is None


@pytest.mark.parametrize("muted", ["child", "parent"])
def test_a_mute_on_pipeline_or_type_skips(muted: str) -> None:
    mute = {"mute_timeliness_check": True}
    child = CHILD | (mute if muted == "child" else {})
    parent = PARENT | (mute if muted == "parent" else {})
    assert resolve("timeliness", child, parent) is None
    assert resolve("timeliness", CHILD | {"mute_freshness_check": True}, PARENT) is not None


def test_schedule_comes_from_the_pipeline_else_the_type_and_grace_from_either() -> None:
    parent = {
        "schedule": "0 2 * * *",
        "schedule_timezone": "Europe/Paris",
        "schedule_grace_seconds": 600,
    }
    s = resolve_schedule({"schedule_grace_seconds": 60}, parent)
    assert s is not None and (s.cron, s.timezone, s.grace_seconds, s.used_child_config) == (
        "0 2 * * *",
        "Europe/Paris",
        60,
        False,
    )
    s = resolve_schedule({"schedule": "*/5 * * * *"}, parent)
    assert s is not None and (s.cron, s.timezone, s.grace_seconds, s.used_child_config) == (
        "*/5 * * * *",
        "UTC",
        600,
        True,
    )
    assert resolve_schedule({}, {}) is None
    assert resolve_schedule({"mute_timeliness_check": True}, parent) is None


def test_split_row_separates_type_columns() -> None:
    child, parent = split_row({"id": 1, "schedule": "x", "type_schedule": "y"})
    assert child == {"id": 1, "schedule": "x"} and parent == {"schedule": "y"}


@pytest.mark.parametrize("datepart", ["minute", "hour", "day", "week", "month", "year"])
def test_a_deadline_beyond_year_9999_never_comes(datepart: str) -> None:
    # 2³¹−1 is a valid rule number; in most dateparts it leaves datetime's range.
    rule = Rule(2**31 - 1, datepart, True)
    deadline = rule.deadline(T0)
    assert deadline > T0 + timedelta(days=365 * 4000) or deadline == NEVER
    assert rule.seconds_from(T0) > 0


def test_calendar_dateparts_past_year_9999_overflow_like_the_fixed_ones() -> None:
    with pytest.raises(OverflowError):
        add_datepart(T0, 8000, "year")
    with pytest.raises(OverflowError):
        add_datepart(T0, 2**31 - 1, "day")
