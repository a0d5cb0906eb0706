"""What may be learned from: training rules, sensitivity, regime changes.

**Training set.** Of the bounded history (`History.bounded`: the last ``window_days`` and at
most ``max_runs`` runs), a run is used when it started at or after ``retrain_from`` ("retrain
from now" forgets everything before), is not ``excluded`` by the user and does not overlap a
declared maintenance window. On top of that, a run flagged by the system is left out of what
it was flagged for (a late start out of the schedule, an anomalous row count out of that
metric's band), unless the user marked it "fine". Seasonal bucket centres are medians, so a
few unflagged outliers do not move them.

**Minimum history** (`has_min_history`), before any expectation exists:

* a schedule needs ≥ ``min_runs`` (8) starts spanning ≥ ``min_periods`` (8) periods *and* ≥
  ``min_span_days`` (7) days. Eight runs make the median gap and the 99% quantile of start
  offsets meaningful; a full week is needed before "does it run on Saturdays?" has an
  answer — a weekday pipeline learned from Monday to Friday would otherwise alert every
  Saturday. A daily pipeline therefore gets a late-start expectation after 8 days;
* a band needs ≥ ``band_min_runs`` (10) successful values (MAD of fewer is too noisy; the
  minimum relative width covers the rest);
* freshness needs ≥ 8 changes spanning ≥ 7 days (the longest usual gap is often the weekend).

**Sensitivity** (`SENSITIVITY`): "low", "medium" (default) or "high" scale every width
together: band ``k`` (8/6/4 MADs) and minimum relative width (±100/50/30%), the start
tolerance (14/10/7 spreads, 4/3/2 × the 99% quantile of lateness) and the freshness
factor (2/1.5/1.25, see `freshness`).

**Regime changes.** A permanent change must become the new normal instead of alerting
forever. With K = ``regime_runs`` (3):

* schedule (`cadence_change_point`): the last K starts are all *off-cadence* — further than
  the tolerance from their nearest slot (early or late), or with at least one allowed slot skipped since
  the previous start. The schedule is then relearned from the first start of that streak
  (so it has no expectation until that new regime has the minimum history);
* metric (`level_shift`): the band is learned without the last K values; if the longest
  suffix of recent values (flagged ones included) has ≥ K of them outside it on one side and
  its median has moved by at least half the band's half-width that way, the values before that suffix are shifted (in log space) by the difference of
  medians and the band is learned again with the suffix — so the shape
  (spread, weekly pattern) is kept and only the level moves. A move *down to zero* is never
  learned: an empty load stays an incident however often it repeats.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

import numpy as np

from watcher.expectations.bands import MetricModel
from watcher.expectations.cadence import Cadence
from watcher.expectations.history import (
    DAY,
    DEFAULT_MAX_RUNS,
    DEFAULT_WINDOW_DAYS,
    BoolArray,
    FloatArray,
    History,
    median,
)

Sensitivity = Literal["low", "medium", "high"]


@dataclass(frozen=True)
class SensitivityParams:
    """The widths one sensitivity level stands for (see module doc)."""

    band_k: float
    band_margin: float
    tolerance_k: float
    tail_factor: float
    freshness_factor: float


SENSITIVITY: Final[Mapping[str, SensitivityParams]] = {
    "low": SensitivityParams(8.0, 1.0, 14.0, 4.0, 2.0),
    "medium": SensitivityParams(6.0, 0.5, 10.0, 3.0, 1.5),
    "high": SensitivityParams(4.0, 0.3, 7.0, 2.0, 1.25),
}


@dataclass(frozen=True)
class LearnSettings:
    """Per-pipeline learning settings; the defaults are the documented ones."""

    sensitivity: Sensitivity = "medium"
    maintenance_windows: tuple[tuple[float, float], ...] = field(default=())
    retrain_from: float | None = None
    window_days: float = DEFAULT_WINDOW_DAYS
    max_runs: int = DEFAULT_MAX_RUNS
    min_runs: int = 8
    min_periods: int = 8
    min_span_days: float = 7.0
    band_min_runs: int = 10
    min_changes: int = 8
    regime_runs: int = 3

    @property
    def params(self) -> SensitivityParams:
        return SENSITIVITY[self.sensitivity]


def in_windows(
    start: FloatArray, end: FloatArray, windows: tuple[tuple[float, float], ...]
) -> BoolArray:
    """Runs overlapping any ``(start, end)`` window (a running run extends to +inf)."""
    hit = np.zeros(start.shape[0], dtype=np.bool_)
    until = np.where(np.isfinite(end), end, np.inf)
    for w0, w1 in windows:
        hit |= (start < w1) & (until > w0)
    return hit


def base_mask(history: History, now: float, settings: LearnSettings) -> BoolArray:
    """Runs usable for training before per-aspect flags (see module doc)."""
    s = history.start
    ok: BoolArray = (s <= now) & (s > now - settings.window_days * DAY) & ~history.excluded
    if settings.retrain_from is not None:
        ok &= s >= settings.retrain_from
    if settings.maintenance_windows:
        ok &= ~in_windows(s, history.end, settings.maintenance_windows)
    return ok


def has_min_history(starts: FloatArray, period: float, settings: LearnSettings) -> str | None:
    """None when ``starts`` are enough to trust a schedule of ``period``, else why not."""
    n = int(starts.shape[0])
    span = float(starts[-1] - starts[0]) if n else 0.0
    need = max(settings.min_periods * period, settings.min_span_days * DAY)
    if n < settings.min_runs or span < need:
        return (
            f"schedule: {n} runs over {span / DAY:.1f} d, need {settings.min_runs} runs"
            f" over {need / DAY:.1f} d"
        )
    return None


def _off_cadence(cadence: Cadence, previous: float, start: float) -> bool:
    slot = cadence.slot_near(start)
    if abs(start - slot) > cadence.tolerance_seconds:
        return True
    expected = cadence.next_expected_start(
        cadence.slot_near(previous) + 0.5 * cadence.period_seconds
    )
    return slot > expected + 0.5 * cadence.period_seconds


def cadence_change_point(cadence: Cadence, starts: FloatArray, k: int) -> float | None:
    """The first start of a streak of ≥ ``k`` off-cadence starts ending at the last start."""
    n = int(starts.shape[0])
    if n < k + 1:
        return None
    i = n - 1
    while i >= 1 and _off_cadence(cadence, float(starts[i - 1]), float(starts[i])):
        i -= 1
    streak = n - 1 - i
    return float(starts[i + 1]) if streak >= k else None


def level_shift(
    model: MetricModel, starts: FloatArray, values: FloatArray, k: int
) -> tuple[int, float] | None:
    """A permanent level change at the end of ``values`` (time order, flagged ones included).

    Returns ``(L, log_shift)`` for the longest suffix of ``L`` values in which at least ``k``
    values are outside the band on one side *and* at least half are beyond the middle of
    that side's margin (centre ± half the band's half-width, in log space) — i.e. the
    suffix's median has moved by half a band. Noisy values back inside the old band then do
    not undo an adopted change, while noise alone (which is beyond half a band ~0.1% of the
    time at medium sensitivity) never makes half a suffix. Values of 0 never count as
    "below": an empty load is never learned as a new normal. None when there is no change.
    """
    n = int(values.shape[0])
    if n < k:
        return None
    half = model.half_width / 2
    # Cheap exit: when none of the last k values is beyond half a band, no suffix ending now
    # can have moved (and the per-time bounds of the whole window are not needed).
    for t, v in zip(starts[-k:].tolist(), values[-k:].tolist(), strict=True):
        lo_c, hi_c = model.log_centres_at(t)
        y_last = math.log1p(max(v, 0.0))
        if y_last > hi_c + half or (v > 0 and y_last < lo_c - half):
            break
    else:
        return None
    low, high = model.bounds_at(starts)
    c_low, c_high = model.centres_at(starts)
    y = np.log1p(np.maximum(values, 0.0))
    length = np.arange(1, n + 1)
    best: tuple[int, float] | None = None
    sides = (
        (values > high, y > c_high + half),
        ((values < low) & (values > 0), (y < c_low - half) & (values > 0)),
    )
    for outside, beyond in sides:
        hits = np.cumsum(outside[::-1])
        most = np.cumsum(beyond[::-1])
        ok = np.flatnonzero((hits >= k) & (2 * most >= length))
        if ok.shape[0] and (best is None or int(ok[-1]) + 1 > best[0]):
            suffix = int(ok[-1]) + 1
            best = (suffix, median(y[-suffix:]) - model.center)
    return best


def shift_values(values: FloatArray, shift: float) -> FloatArray:
    """``values`` moved by ``shift`` in log1p space (a multiplicative move)."""
    out: FloatArray = np.expm1(np.log1p(np.maximum(values, 0.0)) + shift)
    return np.where(np.isfinite(values), out, np.nan)
