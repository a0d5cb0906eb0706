"""Metric bands and anomalies (watcher.expectations.bands)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from watcher.expectations import Band, evaluate, learn_band, overdue

T0 = 1_767_571_200.0  # Monday 00:00 UTC
DAY = 86400.0
K, MARGIN = 6.0, 0.5


def _daily(n: int = 35) -> np.ndarray:
    out: np.ndarray = T0 + 3 * 3600 + np.arange(n) * DAY
    return out


def test_two_sided() -> None:
    rng = np.random.default_rng(1)
    starts = _daily()
    rows: np.ndarray = 10_000 * rng.lognormal(0, 0.1, len(starts))
    m = learn_band("total_rows", starts, rows, float(starts[-1]), k=K, margin=MARGIN)
    assert m is not None
    band = m.band_at(float(starts[-1]) + DAY)
    assert band.low < 10_000 < band.high
    assert evaluate(band, 10_500) is None
    low = evaluate(band, 0.0)
    assert low is not None and low.direction == "low" and "below" in low.text
    high = evaluate(band, 500_000)
    assert high is not None and high.direction == "high"
    assert evaluate(band, math.nan) is None


def test_duration_far_too_short_and_long() -> None:
    rng = np.random.default_rng(2)
    starts = _daily()
    d: np.ndarray = 1200 * rng.lognormal(0, 0.1, len(starts))
    m = learn_band("duration_seconds", starts, d, float(starts[-1]), k=K, margin=MARGIN)
    assert m is not None
    band = m.band_at(float(starts[-1]) + DAY)
    assert evaluate(band, 1.0) is not None  # 1 s when it usually takes 20 min
    assert evaluate(band, 3 * 3600) is not None
    o = overdue(band, 0.0, band.high + 1)
    assert o is not None and "usually takes 2" in o.text and "running for" in o.text
    assert overdue(band, 0.0, band.high - 1) is None


def test_constant_series_has_minimum_width() -> None:
    starts = _daily()
    m = learn_band("total_rows", starts, np.full(35, 1000.0), float(starts[-1]), k=K, margin=0.5)
    assert m is not None
    band = m.band_at(float(starts[-1]))
    assert math.isclose(band.center, 1000)
    assert math.isclose(band.high, 1500, rel_tol=1e-3)
    assert evaluate(band, 1010) is None and evaluate(band, 1400) is None
    assert evaluate(band, 1600) is not None and evaluate(band, 600) is not None


def test_small_values_have_absolute_minimum_width() -> None:
    starts = _daily()
    m = learn_band("total_rows", starts, np.full(35, 3.0), float(starts[-1]), k=K, margin=0.5)
    assert m is not None
    band = m.band_at(float(starts[-1]))
    assert band.high >= 13 and band.low == 0
    assert evaluate(band, 9) is None


def test_zero_series_and_sparse_counts() -> None:
    starts = _daily()
    zero = learn_band("updates", starts, np.zeros(35), float(starts[-1]), k=K, margin=MARGIN)
    assert zero is not None
    band = zero.band_at(float(starts[-1]))
    assert band.low == 0 and band.high == 10
    assert evaluate(band, 0) is None and evaluate(band, 5000) is not None
    rng = np.random.default_rng(4)
    sparse = np.where(rng.random(35) < 0.6, 0.0, rng.poisson(20, 35).astype(float) + 1)
    m = learn_band("soft_deletes", starts, sparse, float(starts[-1]), k=K, margin=MARGIN)
    assert m is not None and m.zero_usual
    b = m.band_at(float(starts[-1]))
    assert evaluate(b, 0) is None and evaluate(b, 35) is None
    assert evaluate(b, 5000) is not None


def test_monday_peak_is_not_flagged_but_a_tuesday_peak_is() -> None:
    rng = np.random.default_rng(5)
    starts = _daily(35)
    monday = ((np.floor(starts / DAY) + 3) % 7) == 0
    rows = np.where(monday, 30_000.0, 10_000.0) * rng.lognormal(0, 0.05, 35)
    m = learn_band("total_rows", starts, rows, float(starts[-1]), k=K, margin=MARGIN)
    assert m is not None
    next_monday = T0 + 35 * DAY + 3 * 3600
    assert ((np.floor(next_monday / DAY) + 3) % 7) == 0
    assert evaluate(m.band_at(next_monday), 31_000) is None
    assert evaluate(m.band_at(next_monday + DAY), 31_000) is not None


def test_too_few_values() -> None:
    starts = _daily(9)
    assert learn_band("total_rows", starts, np.ones(9), T0, k=K, margin=MARGIN) is None
    values = np.full(35, np.nan)
    values[:5] = 1.0
    assert learn_band("total_rows", _daily(), values, T0, k=K, margin=MARGIN) is None


def test_vectorised_bounds_match_band_at() -> None:
    rng = np.random.default_rng(6)
    starts: np.ndarray = T0 + np.arange(24 * 21) * 3600.0
    values: np.ndarray = 500 * rng.lognormal(0, 0.2, len(starts))
    m = learn_band("inserts", starts, values, float(starts[-1]), k=K, margin=MARGIN)
    assert m is not None
    ts: np.ndarray = starts[-50:] + 7 * DAY
    low, high = m.bounds_at(ts)
    for t, lo, hi in zip(ts.tolist(), low.tolist(), high.tolist(), strict=True):
        b = m.band_at(t)
        assert math.isclose(b.low, lo, rel_tol=1e-9) and math.isclose(b.high, hi, rel_tol=1e-9)


@settings(max_examples=30, deadline=None)
@given(
    level=st.floats(1.0, 1e7),
    sigma=st.floats(0.0, 0.3),
    seed=st.integers(0, 10_000),
)
def test_band_contains_its_median_and_is_ordered(level: float, sigma: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    starts = _daily()
    values = np.round(level * rng.lognormal(0, sigma, 35))
    m = learn_band("total_rows", starts, values, float(starts[-1]), k=K, margin=MARGIN)
    assert m is not None
    b: Band = m.band_at(float(starts[-1]) + DAY)
    assert 0 <= b.low <= b.center <= b.high
    assert evaluate(b, b.center) is None
    assert b.high >= b.center * (1 + MARGIN) - 1e-6
