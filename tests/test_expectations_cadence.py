"""Schedule inference and late starts (watcher.expectations.cadence)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from watcher.expectations import Cadence, History, infer_cadence, late_start, learn
from watcher.expectations.cadence import WEEKDAYS

T0 = 1_767_571_200.0  # Monday 2026-01-05 00:00 UTC
DAY = 86400.0


def _jittered(slots: np.ndarray, scale: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out: np.ndarray = slots + rng.exponential(scale, slots.shape[0])
    return out


def test_hourly_at_five_past() -> None:
    starts = _jittered(T0 + 300 + np.arange(24 * 14) * 3600.0, 20)
    c = infer_cadence(starts)
    assert c is not None and c.kind == "hourly"
    assert c.weekday_mask == 0b1111111
    assert 300 <= c.phase_seconds <= 340
    assert 60 <= c.tolerance_seconds <= 600
    assert c.describe().startswith("usually starts at :05 ±")
    assert c.describe().endswith("every hour")


def test_every_15_minutes() -> None:
    starts = _jittered(T0 + 120 + np.arange(96 * 8) * 900.0, 8)
    c = infer_cadence(starts)
    assert c is not None and c.period_seconds == 900 and c.kind == "every_n_minutes"
    assert "every 15 min" in c.describe() and ":02" in c.describe()


def test_daily_at_0230() -> None:
    starts = _jittered(T0 + 2.5 * 3600 + np.arange(21) * DAY, 60)
    c = infer_cadence(starts)
    assert c is not None and c.kind == "daily"
    assert c.describe().startswith("usually starts at 02:3")


def test_weekdays_only_and_no_alert_on_saturday() -> None:
    days = np.arange(28) * DAY
    slots = T0 + 6 * 3600 + days
    weekday = ((np.floor(slots / DAY) + 3) % 7) < 5
    starts = _jittered(slots[weekday], 60)
    c = infer_cadence(starts)
    assert c is not None and c.weekday_mask == WEEKDAYS and c.kind == "weekdays"
    assert "Mon–Fri" in c.describe()
    friday = float(starts[-1])  # the last run: Friday of week 4
    assert ((np.floor(friday / DAY) + 3) % 7) == 4
    saturday_noon = friday + DAY + 6 * 3600
    assert late_start(c, friday, saturday_noon) is None
    assert late_start(c, friday, friday + 2 * DAY + 12 * 3600) is None  # Sunday evening
    monday_late = friday + 3 * DAY + 3600
    late = late_start(c, friday, monday_late)
    assert late is not None and late.missed_slots == 1
    assert c.next_expected_start(friday) == late.due


def test_irregular_is_none() -> None:
    rng = np.random.default_rng(3)
    starts = T0 + np.cumsum(rng.exponential(3 * 3600, 300))
    assert infer_cadence(starts) is None
    assert infer_cadence(np.array([T0, T0 + 10])) is None


def test_office_hours_only_is_none() -> None:
    slots = np.array([T0 + d * DAY + h * 3600.0 for d in range(14) for h in range(9, 17)])
    assert infer_cadence(slots) is None


def test_late_start_text_and_timing() -> None:
    c = Cadence(
        period_seconds=DAY,
        phase_seconds=2.5 * 3600,
        weekday_mask=0b1111111,
        tolerance_seconds=240.0,
        spread_seconds=30.0,
        n_runs=30,
    )
    last = T0 + 2.5 * 3600 + 20
    due = T0 + DAY + 2.5 * 3600
    assert late_start(c, last, due + 239) is None
    late = late_start(c, last, due + 42 * 60)
    assert late is not None
    assert late.due == due and late.deadline == due + 240
    assert late.text.startswith("usually starts at 02:30 UTC ± 4 min; nothing since 02:30")
    assert "42 min late" in late.text
    assert late_start(c, last, due + 2 * DAY + 600) is not None
    assert late_start(c, last, due + 2 * DAY + 600).missed_slots == 3  # type: ignore[union-attr]


def test_hourly_text() -> None:
    c = Cadence(3600.0, 300.0, 0b1111111, 120.0, 10.0, 100)
    assert c.describe() == "usually starts at :05 ± 2 min every hour"


def test_learn_needs_a_week_and_finds_schedule() -> None:
    starts = _jittered(T0 + 300 + np.arange(24 * 10) * 3600.0, 20)
    h = History.of(starts, end=starts + 60)
    assert learn(h, T0 + 5 * DAY).cadence is None  # 5 days < 7 days of history
    e = learn(h, float(starts[-1]) + 120)
    assert e.cadence is not None and e.cadence.period_seconds == 3600


@settings(max_examples=25, deadline=None)
@given(
    period=st.sampled_from([300.0, 900.0, 3600.0, 6 * 3600.0, DAY]),
    phase_fraction=st.floats(0, 0.99),
    jitter_fraction=st.floats(0.0005, 0.01),
    seed=st.integers(0, 1000),
)
def test_jittered_schedules_are_recovered(
    period: float, phase_fraction: float, jitter_fraction: float, seed: int
) -> None:
    n = 200 if period < DAY else 30
    phase = round(phase_fraction * period / 60) * 60
    starts = _jittered(T0 + phase + np.arange(n) * period, jitter_fraction * period, seed)
    c = infer_cadence(starts)
    assert c is not None
    assert c.period_seconds == period
    offset = (c.phase_seconds - phase + period / 2) % period - period / 2
    assert 0 <= offset <= 3 * jitter_fraction * period + 1
    # Every training start is within tolerance of its slot: no alert on its own history.
    slots = np.array([c.slot_near(s) for s in starts])
    assert np.all(starts - slots <= c.tolerance_seconds)
