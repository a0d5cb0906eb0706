"""Staleness after a late start reported since the last change is said once (pure)."""

from __future__ import annotations

from watcher.expectations.freshness import said_by_late_start


def test_staleness_is_said_by_a_late_start_reported_since_the_last_change() -> None:
    assert said_by_late_start(last_change=100.0, late_reported_at=150.0, now=200.0)
    assert not said_by_late_start(last_change=100.0, late_reported_at=None, now=200.0)
    # A late start before the last change is an older episode: staleness is reported.
    assert not said_by_late_start(last_change=100.0, late_reported_at=90.0, now=200.0)
    assert not said_by_late_start(last_change=100.0, late_reported_at=100.0, now=200.0)
    # One reported after `now` (a clock moved back) says nothing yet.
    assert not said_by_late_start(last_change=100.0, late_reported_at=250.0, now=200.0)
