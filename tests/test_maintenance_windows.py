"""Declared maintenance windows: the pure rules, and the API, learning and check over HTTP."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import httpx
import pytest

from tests.check_helpers import make_pipeline
from tests.conftest import LiveServer
from tests.learned_helpers import daily_starts, seed
from tests.test_learned import check, daily, expectations, kinds, learn, to_0300
from watcher.expectations import History, LearnSettings
from watcher.expectations import learn as learn_pure
from watcher.expectations.maintenance import active, overlaps, resume_from

HOUR = 3600.0
DAY = 24 * HOUR


# --- pure ---------------------------------------------------------------------------------


def test_inside_a_window_means_start_inclusive_end_exclusive() -> None:
    ws = [(100.0, 200.0)]
    assert active(ws, 100.0) and active(ws, 199.0)
    assert not active(ws, 99.0) and not active(ws, 200.0) and not active([], 150.0)


def test_a_run_overlaps_a_window_when_any_part_of_it_is_inside() -> None:
    ws = [(100.0, 200.0)]
    assert overlaps(ws, 50.0, 150.0) and overlaps(ws, 150.0, 250.0) and overlaps(ws, 120.0, 130.0)
    assert overlaps(ws, 50.0, None)  # still running into the window
    assert not overlaps(ws, 10.0, 100.0) and not overlaps(ws, 200.0, 300.0)


def test_waits_resume_from_the_end_of_a_window() -> None:
    ws = [(100.0, 200.0), (400.0, 500.0)]
    assert resume_from(ws, 150.0, 450.0) is None  # now inside: nothing is found
    assert resume_from(ws, 150.0, 300.0) == 200.0  # the wait restarts at the window's end
    assert resume_from(ws, 50.0, 600.0) == 500.0  # the latest window that ended wins
    assert resume_from(ws, 250.0, 300.0) == 250.0  # a window before the wait changes nothing
    assert resume_from([(700.0, 800.0)], 250.0, 300.0) == 250.0  # nor one still to come


def _daily_history(days: int, wild_from: int, wild_rows: float) -> tuple[History, float]:
    """`days` daily runs of ~1,000 rows; from run `wild_from` on, `wild_rows` rows."""
    starts = [2.5 * HOUR + d * DAY + (d * 37) % 90 for d in range(days)]
    noise = [(i * 7) % 11 for i in range(days)]
    rows = [1000.0 + 10 * n if i < wild_from else wild_rows for i, n in enumerate(noise)]
    return (
        History.of(
            starts,
            end=[s + 600 + n for s, n in zip(starts, noise, strict=True)],
            total_rows=rows,
            inserts=rows,
            updates=[0.0] * days,
            soft_deletes=[0.0] * days,
        ),
        starts[-1] + DAY / 2,
    )


def test_training_leaves_out_the_runs_of_a_window() -> None:
    history, now = _daily_history(20, 17, 5000.0)
    clean, _ = _daily_history(17, 17, math.nan)
    window = ((history.start[17] - HOUR), (history.start[19] + HOUR))
    inside = learn_pure(history, now, LearnSettings(maintenance_windows=(window,)))
    without = learn_pure(history, now)
    reference = learn_pure(clean, now)
    band = inside.band("total_rows", now)
    assert band is not None and band == reference.band("total_rows", now)
    assert band.high < 5000
    moved = without.band("total_rows", now)
    assert moved is not None and moved.center > 2 * band.center  # a new normal without it


# --- over HTTP ----------------------------------------------------------------------------


def window(client: httpx.Client, **body: Any) -> dict[str, Any]:
    r = client.post("/maintenance_window", json={"reason": "db upgrade", **body})
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


def band(client: httpx.Client, pid: int, metric: str = "total_rows") -> dict[str, Any]:
    [b] = [b for b in expectations(client, pid)["bands"] if b["metric"] == metric]
    found: dict[str, Any] = b
    return found


def test_runs_in_a_window_are_not_learned_from_until_it_is_deleted(
    client: httpx.Client, live: LiveServer
) -> None:
    pid = make_pipeline(client, "daily")
    at = to_0300(live) - timedelta(minutes=40)
    live.clock.advance(at - live.clock.now())
    starts = daily_starts(at, 20)
    seed(live, pid, starts[:17])
    seed(live, pid, starts[17:], rows=5000)  # three wild runs, during maintenance
    w = window(
        client,
        pipeline_id=pid,
        start_date=(starts[17] - timedelta(hours=1)).isoformat(),
        end_date=(starts[19] + timedelta(hours=1)).isoformat(),
    )
    assert w["scope"] == "pipeline" and w["reason"] == "db upgrade"
    learn(client)
    kept = band(client, pid)
    assert kept["high"] < 5000
    r = client.delete(f"/maintenance_window/{w['id']}")
    assert r.status_code == 204
    assert learn(client)["pipelines_learned"] == 1  # deleting it makes the pipeline relearn
    assert band(client, pid)["center"] > 2 * kept["center"]


def test_nothing_learned_alerts_during_a_window_and_waits_resume_after_it(
    client: httpx.Client, live: LiveServer
) -> None:
    pid = daily(client, live)  # 02:20, the 02:30 run not due yet
    now = live.clock.now()
    w = window(
        client,
        start_date=(now - timedelta(minutes=5)).isoformat(),
        end_date=(now + timedelta(hours=2)).isoformat(),
    )
    assert w["scope"] == "global"
    seed(live, pid, [now - timedelta(minutes=4)], rows=50_000)  # a wild run inside it
    to_0300(live)  # today's 02:30 did not start
    assert check(client)["findings"] == []
    live.clock.advance(timedelta(hours=2))  # 05:00: the window ended at 04:20
    assert "late_start" not in kinds(check(client))  # the next slot after it is tomorrow's
    assert "anomaly" not in kinds(check(client))  # the wild run overlapped the window
    live.clock.advance(timedelta(hours=22))  # tomorrow 03:00: that slot is missed
    assert kinds(check(client)) == ["late_start"]
    assert [r["kind"] for r in live.sql("SELECT kind FROM learned_finding_log")] == ["late_start"]
    assert pid


def test_a_type_window_covers_the_pipelines_of_that_type_only(
    client: httpx.Client, live: LiveServer
) -> None:
    pid = daily(client, live)
    other = make_pipeline(client, "other", type_name="batch")
    type_of = live.sql("SELECT pipeline_type_id AS t FROM pipeline WHERE id = :p", p=other)
    now = live.clock.now()
    span = {
        "start_date": (now - timedelta(hours=1)).isoformat(),
        "end_date": (now + timedelta(hours=3)).isoformat(),
    }
    w = window(client, pipeline_type_id=type_of[0]["t"], **span)
    assert w["scope"] == "pipeline_type"
    to_0300(live)
    assert kinds(check(client)) == ["late_start"]  # pipeline `daily` is of type etl
    listed = client.get("/maintenance_window", params={"pipeline_id": pid}).json()
    assert listed == []
    listed = client.get("/maintenance_window", params={"pipeline_id": other}).json()
    assert [x["id"] for x in listed] == [w["id"]]
    assert client.get(f"/maintenance_window/{w['id']}").json() == w


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"start_date": "2024-01-02T00:00:00Z", "end_date": "2024-01-01T00:00:00Z"}, "end_date"),
        ({"start_date": "2024-01-02T00:00:00Z", "end_date": "2024-01-02T00:00:00Z"}, "end_date"),
        ({"start_date": "2024-01-02T00:00:00Z"}, "end_date"),
        ({"end_date": "2024-01-02T00:00:00Z"}, "start_date"),
        (
            {
                "start_date": "2024-01-01T00:00:00Z",
                "end_date": "2024-01-02T00:00:00Z",
                "reason": " ",
            },
            "reason",
        ),
        (
            {
                "start_date": "2024-01-01T00:00:00Z",
                "end_date": "2024-01-02T00:00:00Z",
                "pipeline_id": 1,
                "pipeline_type_id": 1,
            },
            "pipeline_type_id",
        ),
        (
            {
                "start_date": "2024-01-01T00:00:00Z",
                "end_date": "2024-01-02T00:00:00Z",
                "pipeline_id": 0,
            },
            "pipeline_id",
        ),
    ],
)
def test_bad_windows_are_refused_naming_the_field(
    client: httpx.Client, live: LiveServer, body: dict[str, Any], loc: str
) -> None:
    r = client.post("/maintenance_window", json={"reason": "x", **body})
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["loc"] == ["body", loc]
    assert live.sql("SELECT count(*) AS n FROM maintenance_window")[0]["n"] == 0


def test_unknown_windows_pipelines_and_types_are_not_found(
    client: httpx.Client, live: LiveServer
) -> None:
    span = {"start_date": "2024-01-01T00:00:00Z", "end_date": "2024-01-02T00:00:00Z"}
    r = client.post("/maintenance_window", json={"reason": "x", "pipeline_id": 999, **span})
    assert r.status_code == 404 and r.json()["errors"][0]["loc"] == ["body", "pipeline_id"]
    r = client.post("/maintenance_window", json={"reason": "x", "pipeline_type_id": 999, **span})
    assert r.status_code == 404 and r.json()["errors"][0]["loc"] == ["body", "pipeline_type_id"]
    assert client.get("/maintenance_window/999").status_code == 404
    assert client.delete("/maintenance_window/999").status_code == 404
    assert live.sql("SELECT count(*) AS n FROM maintenance_window")[0]["n"] == 0
