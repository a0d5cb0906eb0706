"""The blind-window logic, pure: heartbeat segments → windows → which evidence is unknown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from watcher.availability.windows import Gate, Segment, Window, blind_windows

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
TOL = timedelta(seconds=15)
CATCH_UP = timedelta(minutes=10)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def seg(start: float, last: float) -> Segment:
    return Segment(at(start), at(last))


def test_no_heartbeat_record_means_no_window() -> None:
    assert blind_windows([], at(100), TOL) == []
    gate = Gate([], at(100), CATCH_UP)
    assert gate.window_of(at(-1000), at(100)) is None and not gate.catching_up


def test_the_time_before_the_first_heartbeat_is_a_window() -> None:
    windows = blind_windows([seg(0, 100)], at(100), TOL)
    assert windows == [Window(None, at(0))]
    gate = Gate(windows, at(100), CATCH_UP)
    assert gate.window_of(at(-50), at(100)) == Window(None, at(0))  # evidence before start
    assert gate.window_of(at(10), at(100)) is None  # evidence after the first beat
    assert gate.last_window() is None  # no real hole: the gap metric stays 0
    # Once the catch-up after the first beat is over, the old evidence counts again.
    later = Gate(blind_windows([seg(0, 700)], at(700), TOL), at(700), CATCH_UP)
    assert later.window_of(at(-50), at(700)) is None


def test_overlapping_replicas_leave_no_hole() -> None:
    # a: 0–100, b: 90–300 (a rolling restart), c: 310–400 (10 s after b: within tolerance)
    windows = blind_windows([seg(90, 300), seg(0, 100), seg(310, 400)], at(400), TOL)
    assert windows == [Window(None, at(0))]


def test_a_replica_inside_another_does_not_end_the_cover() -> None:
    windows = blind_windows([seg(0, 500), seg(100, 200), seg(505, 600)], at(600), TOL)
    assert windows == [Window(None, at(0))]


def test_a_crash_leaves_a_hole_between_the_segments() -> None:
    windows = blind_windows([seg(0, 100), seg(160, 300)], at(300), TOL)
    assert windows[-1] == Window(at(100), at(160))
    assert windows[-1].seconds(at(300)) == 60


def test_a_database_outage_splits_one_replica_into_two_segments() -> None:
    # The process lived, but could not write beats from 100 to 130: its next successful
    # beat opened a new segment (the heartbeat writer's rule), so the outage is a hole.
    windows = blind_windows([seg(0, 100), seg(130, 200)], at(200), TOL)
    assert windows[-1] == Window(at(100), at(130))


def test_an_ongoing_hole_is_an_open_window() -> None:
    windows = blind_windows([seg(0, 100)], at(200), TOL)
    assert windows[-1] == Window(at(100), None)
    gate = Gate(windows, at(200), CATCH_UP)
    assert gate.catching_up
    assert gate.window_of(at(150), at(200)) == Window(at(100), None)
    assert blind_windows([seg(0, 100)], at(115), TOL) == [Window(None, at(0))]  # jitter


def test_evidence_is_unknown_until_the_catch_up_after_the_window_ends() -> None:
    windows = [Window(None, at(0)), Window(at(100), at(160))]
    evidence = (at(120), at(170))  # e.g. a run due at 130 s
    assert Gate(windows, at(170), CATCH_UP).window_of(*evidence) == windows[1]
    just_before = at(160) + CATCH_UP - timedelta(microseconds=1)
    assert Gate(windows, just_before, CATCH_UP).window_of(*evidence) == windows[1]
    assert Gate(windows, at(160) + CATCH_UP, CATCH_UP).window_of(*evidence) is None


def test_evidence_outside_the_window_is_judged_as_always() -> None:
    windows = [Window(None, at(0)), Window(at(100), at(160))]
    gate = Gate(windows, at(200), CATCH_UP)
    assert gate.window_of(at(20), at(100)) is None  # ends where the window starts
    assert gate.window_of(at(160), at(200)) is None  # starts where it ends
    assert gate.window_of(at(150), at(155)) == windows[1]  # inside
    assert gate.window_of(at(50), at(250)) == windows[1]  # spans it


def test_split_keeps_findings_that_rest_on_stored_data() -> None:
    gate = Gate([Window(at(100), at(160))], at(200), CATCH_UP)
    findings = ["completed", "running", "old"]
    intervals = {
        "completed": None,
        "running": (at(90), at(200)),
        "old": (at(10), at(50)),
    }
    kept, held = gate.split(findings, intervals.__getitem__)
    assert kept == ["completed", "old"] and held == ["running"]
