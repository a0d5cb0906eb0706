from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.check_helpers import MANY, bulk_pipelines, make_pipeline, patch_pipeline, patch_type, run
from tests.conftest import LiveServer
from watcher.checks import freshness
from watcher.checks.freshness import judge

HOUR = timedelta(hours=1)


def now() -> datetime:
    return datetime.now(UTC)


def check(client: httpx.Client) -> dict[str, Any]:
    r = client.post("/freshness")
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


def by_pipeline(result: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {f["pipeline_id"]: f for f in result["findings"]}


def test_a_stale_pipeline_is_logged_once_per_last_dml(
    client: httpx.Client, live: LiveServer
) -> None:
    pid = make_pipeline(client, "p", freshness_number=2, freshness_datepart="hour")
    t = now() - HOUR
    run(client, pid, t - timedelta(minutes=5), t, inserts=3)
    assert check(client)["findings"] == []
    live.clock.advance(HOUR + timedelta(seconds=5))
    first = by_pipeline(check(client))[pid]
    assert first["newly_logged"] is True and first["used_child_config"] is True
    assert first["threshold_seconds"] == 7200
    assert datetime.fromisoformat(first["last_dml_timestamp"]) == t
    again = check(client)
    assert again["new_findings"] == 0 and by_pipeline(again)[pid]["newly_logged"] is False
    # A new write makes it fresh; going stale again is a new finding.
    t2 = live.clock.now()
    run(client, pid, t2 - timedelta(minutes=1), t2, updates=1)
    assert check(client)["findings"] == []
    live.clock.advance(3 * HOUR)
    assert by_pipeline(check(client))[pid]["newly_logged"] is True
    logged = live.sql("SELECT last_dml_timestamp FROM freshness_pipeline_log ORDER BY id")
    assert [r["last_dml_timestamp"] for r in logged] == [t, t2]


def test_last_dml_is_the_latest_of_insert_update_and_soft_delete(
    client: httpx.Client, live: LiveServer
) -> None:
    pid = make_pipeline(client, "p", freshness_number=1, freshness_datepart="day")
    base = now() - timedelta(days=3)
    live.sql(
        "UPDATE pipeline SET last_target_insert = :a, last_target_update = :b,"
        " last_target_soft_delete = :c WHERE id = :id",
        a=base,
        b=base + timedelta(days=1),
        c=base + timedelta(hours=2),
        id=pid,
    )
    found = by_pipeline(check(client))[pid]
    assert datetime.fromisoformat(found["last_dml_timestamp"]) == base + timedelta(days=1)
    live.sql("UPDATE pipeline SET last_target_soft_delete = :c WHERE id = :id", c=now(), id=pid)
    assert check(client)["findings"] == []


def test_pipelines_without_dml_are_skipped(client: httpx.Client) -> None:
    pid = make_pipeline(client, "p", freshness_number=1, freshness_datepart="minute")
    t = now() - timedelta(days=2)
    run(client, pid, t, t + HOUR, inserts=0, updates=0, total_rows=10)
    result = check(client)
    assert result["findings"] == [] and result["pipelines_checked"] == 0


def test_type_rule_mutes_and_inactive(client: httpx.Client, live: LiveServer) -> None:
    old = now() - timedelta(days=10)
    ids = {
        name: make_pipeline(client, name, type_name=type_name)
        for name, type_name in [("a", "daily"), ("b", "daily"), ("c", "daily"), ("d", "quiet")]
    }
    patch_type(client, "daily", freshness_number=1, freshness_datepart="week")
    patch_type(client, "quiet", freshness_number=1, freshness_datepart="week")
    patch_type(client, "quiet", mute_freshness_check=True)
    patch_pipeline(client, "b", mute_freshness_check=True)
    patch_pipeline(client, "c", active=False)
    live.sql("UPDATE pipeline SET last_target_insert = :t", t=old)
    found = by_pipeline(check(client))
    assert set(found) == {ids["a"]}
    assert found[ids["a"]]["used_child_config"] is False
    assert found[ids["a"]]["freshness_datepart"] == "week"


def row(last_dml: datetime | None, number: int, datepart: str) -> dict[str, Any]:
    return {
        "id": 1,
        "pipeline_name": "p",
        "last_dml": last_dml,
        "freshness_number": number,
        "freshness_datepart": datepart,
    }


JAN31 = datetime(2023, 1, 31, 6, tzinfo=UTC)


@pytest.mark.parametrize(
    ("number", "datepart", "deadline"),
    [
        (15, "minute", JAN31 + timedelta(minutes=15)),
        (6, "hour", JAN31 + 6 * HOUR),
        (1, "day", JAN31 + timedelta(days=1)),
        (2, "week", JAN31 + timedelta(weeks=2)),
        (1, "month", datetime(2023, 2, 28, 6, tzinfo=UTC)),  # not a leap year
        (2, "year", datetime(2025, 1, 31, 6, tzinfo=UTC)),
    ],
)
def test_stale_only_strictly_after_the_deadline(
    number: int, datepart: str, deadline: datetime
) -> None:
    assert judge(row(JAN31, number, datepart), deadline) is None
    stale = judge(row(JAN31, number, datepart), deadline + timedelta(microseconds=1))
    assert stale is not None and stale.deadline == deadline
    assert judge(row(None, number, datepart), deadline + timedelta(days=999)) is None


def test_thousands_of_stale_pipelines_are_logged_in_one_check(live: LiveServer) -> None:
    bulk_pipelines(
        live,
        MANY,
        "freshness_number, freshness_datepart, last_target_insert",
        "1, 'hour', now() - interval '2 days' - g * interval '1 second'",
    )
    first = live.run(lambda: freshness.run(live.services))
    assert first["pipelines_checked"] == MANY and first["new_findings"] == MANY
    again = live.run(lambda: freshness.run(live.services))
    assert again["new_findings"] == 0 and len(again["findings"]) == MANY
    assert live.sql("SELECT count(*) AS n FROM freshness_pipeline_log")[0]["n"] == MANY


def test_a_rule_too_long_for_the_calendar_never_fails_the_check(client: httpx.Client) -> None:
    """Rule numbers go up to 2³¹−1; such a deadline is past year 9999. It used to raise
    OverflowError and fail the whole check (every pipeline's) with a 500."""
    endless = make_pipeline(client, "endless", freshness_number=2**31 - 1, freshness_datepart="day")
    stale = make_pipeline(client, "stale", freshness_number=1, freshness_datepart="hour")
    t = now() - 2 * HOUR
    run(client, endless, t - timedelta(minutes=5), t, inserts=1)
    run(client, stale, t - timedelta(minutes=5), t, inserts=1)
    assert set(by_pipeline(check(client))) == {stale}
