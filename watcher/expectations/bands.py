"""Robust two-sided bands for run metrics (duration, total rows, each DML count).

Every metric is non-negative and its noise is roughly multiplicative (a load twice as big
varies twice as much), so bands are built on ``y = log1p(value)``:

* **recent band** — median ``c`` of ``y`` over the recent window (`RECENT_DAYS`, at least
  the last ``min_runs`` values) ± ``w``, where ``w = max(k·σ, log(1 + margin))`` and ``σ`` is
  the larger of ``1.4826·MAD`` of the recent values and ``1.4826·MAD(Δy)/√2`` of consecutive
  differences over the whole window (a daily pipeline has only ~10 recent values, whose MAD
  often underestimates the noise; differences use all values and ignore slow trends):
  ``k`` comes from the sensitivity, the margin is the minimum *relative* width (±50% at
  medium, like the adaptive bands of Grafana's promql-anomaly-detection) so a metric that is
  constant or almost constant does not alert on a 1% change;
* **seasonal bands** — the same ``w`` around the median of the same UTC hour-of-day bucket
  and of the same UTC day-of-week bucket (over the whole training window, used when the
  bucket has ≥ ``min_bucket`` values). Only the centre is per bucket: a bucket has 3–5
  values, too few for its own spread;
* the band at a time is the **union** of the recent band and the two buckets of that time,
  so a peak every Monday is inside Monday's band but a peak on a Tuesday is not;
* a minimum **absolute** width (`ABS_MIN`: 30 s, 10 rows) around each centre, so tiny
  values (3 rows, 4 s) do not alert on noise;
* **zeros**: when at least 5% of the training values are 0, zero is a usual value — the
  band's low is 0 and its centre and spread come from the non-zero values (sparse deletes);
  an all-zero series gives ``[0, ABS_MIN]``.

Seasonal bucket medians are computed for all buckets at once with one sort
(`grouped_median`), so learning all bands costs a few sorts of the window.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from watcher.expectations.cadence import MAD_SCALE, format_duration, weekday_at, weekday_of
from watcher.expectations.history import DAY, FloatArray, IntArray, median

RECENT_DAYS: Final = 14.0
ABS_MIN: Final[Mapping[str, float]] = {
    "duration_seconds": 30.0,
    "total_rows": 10.0,
    "inserts": 10.0,
    "updates": 10.0,
    "soft_deletes": 10.0,
}
ZERO_USUAL_FRACTION: Final = 0.05
_KEY_STRIDE: Final = 100.0  # log1p values are < 100 (clipped), so group·100 + y sorts by group


@dataclass(frozen=True)
class Band:
    """The usual range ``[low, high]`` of a metric at one time, from ``n`` recent values."""

    metric: str
    low: float
    high: float
    center: float
    n: int

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "low": self.low,
            "high": self.high,
            "center": self.center,
            "n": self.n,
        }


@dataclass(frozen=True)
class Anomaly:
    """A value outside its band; ``direction`` is "high" or "low"."""

    metric: str
    value: float
    band: Band
    direction: str
    text: str


@dataclass(frozen=True)
class Overdue:
    """A run still running past the high end of the duration band."""

    started_at: float
    limit_seconds: float
    running_seconds: float
    text: str


def _fmt(metric: str, value: float) -> str:
    return format_duration(value) if metric == "duration_seconds" else f"{value:,.0f}"


def evaluate(band: Band, value: float) -> Anomaly | None:
    """The anomaly of ``value`` against ``band`` (either direction), None if inside or NaN."""
    if not math.isfinite(value) or band.low <= value <= band.high:
        return None
    direction = "high" if value > band.high else "low"
    word = "above" if direction == "high" else "below"
    m = band.metric
    text = (
        f"{m} {_fmt(m, value)} is {word} the usual {_fmt(m, band.low)}–{_fmt(m, band.high)}"
        f" (median {_fmt(m, band.center)}, {band.n} runs)"
    )
    return Anomaly(metric=m, value=value, band=band, direction=direction, text=text)


def overdue(duration: Band, started_at: float, now: float) -> Overdue | None:
    """Whether a run started at ``started_at`` has run longer than the duration band allows."""
    running = now - started_at
    if running <= duration.high:
        return None
    text = (
        f"running for {format_duration(running)}; usually takes"
        f" {format_duration(duration.center)} (at most {format_duration(duration.high)})"
    )
    return Overdue(
        started_at=started_at, limit_seconds=duration.high, running_seconds=running, text=text
    )


@dataclass(frozen=True)
class MetricModel:
    """The learned band of one metric, in log1p space, with its seasonal bucket centres."""

    metric: str
    center: float
    half_width: float
    zero_usual: bool
    n: int
    hour_centers: tuple[float | None, ...]
    weekday_centers: tuple[float | None, ...]

    def band_at(self, t: float) -> Band:
        """The union of the recent band and the buckets of ``t``'s UTC hour and weekday."""
        hour = int(t % DAY // 3600)
        day = weekday_at(t)
        centres = [self.center, self.hour_centers[hour], self.weekday_centers[day]]
        abs_min = ABS_MIN[self.metric]
        low, high = math.inf, -math.inf
        for c in centres:
            if c is None:
                continue
            mid = math.expm1(c)
            low = min(low, math.expm1(c - self.half_width), mid - abs_min)
            high = max(high, math.expm1(c + self.half_width), mid + abs_min)
        low = 0.0 if self.zero_usual else max(low, 0.0)
        return Band(self.metric, low=low, high=high, center=math.expm1(self.center), n=self.n)

    def log_centres_at(self, t: float) -> tuple[float, float]:
        """Lowest and highest log centre at one time (see `centres_at`)."""
        centres = [self.center, self.hour_centers[int(t % DAY // 3600)]]
        centres.append(self.weekday_centers[weekday_at(t)])
        known = [c for c in centres if c is not None]
        return min(known), max(known)

    def centres_at(self, t: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Lowest and highest log centre (recent, hour bucket, weekday bucket) per time."""
        nan = np.nan
        hours = np.array([nan if c is None else c for c in self.hour_centers])
        days = np.array([nan if c is None else c for c in self.weekday_centers])
        by_hour = hours[(t % DAY // 3600).astype(np.int64)]
        by_day = days[weekday_of(t).astype(np.int64)]
        low = np.fmin(np.fmin(by_hour, by_day), self.center)
        high = np.fmax(np.fmax(by_hour, by_day), self.center)
        return low, high

    def bounds_at(self, t: FloatArray) -> tuple[FloatArray, FloatArray]:
        """`band_at`'s ``(low, high)`` for many times at once."""
        c_low, c_high = self.centres_at(t)
        abs_min = ABS_MIN[self.metric]
        low = np.minimum(np.expm1(c_low - self.half_width), np.expm1(c_low) - abs_min)
        high = np.maximum(np.expm1(c_high + self.half_width), np.expm1(c_high) + abs_min)
        low = np.zeros_like(low) if self.zero_usual else np.maximum(low, 0.0)
        return low, high

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "center": self.center,
            "half_width": self.half_width,
            "zero_usual": self.zero_usual,
            "n": self.n,
            "hour_centers": list(self.hour_centers),
            "weekday_centers": list(self.weekday_centers),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MetricModel:
        def opt(values: list[float | None]) -> tuple[float | None, ...]:
            return tuple(None if v is None else float(v) for v in values)

        return cls(
            metric=str(data["metric"]),
            center=float(data["center"]),
            half_width=float(data["half_width"]),
            zero_usual=bool(data["zero_usual"]),
            n=int(data["n"]),
            hour_centers=opt(data["hour_centers"]),
            weekday_centers=opt(data["weekday_centers"]),
        )


def grouped_median(groups: IntArray, y: FloatArray, n_groups: int) -> tuple[FloatArray, IntArray]:
    """Median of ``y`` (0 ≤ y < 100) per group id in ``[0, n_groups)`` and the group sizes,
    with a single sort of ``group·100 + y``; NaN for empty groups."""
    counts = np.bincount(groups, minlength=n_groups).astype(np.int64)
    keys = np.sort(groups * _KEY_STRIDE + y)
    first = np.cumsum(counts) - counts
    lo = first + np.maximum(counts - 1, 0) // 2
    hi = first + counts // 2
    out = np.full(n_groups, np.nan)
    has = counts > 0
    base = np.arange(n_groups, dtype=np.float64) * _KEY_STRIDE
    out[has] = (keys[lo[has]] + keys[hi[has]]) / 2 - base[has]
    return out, counts


def learn_band(
    metric: str,
    start: FloatArray,
    values: FloatArray,
    now: float,
    *,
    k: float,
    margin: float,
    min_runs: int = 10,
    min_bucket: int = 3,
    recent_days: float = RECENT_DAYS,
) -> MetricModel | None:
    """The band of one metric from training values (NaN = not in training) at their starts.

    None when fewer than ``min_runs`` values remain (see module doc for the method).
    """
    ok = np.isfinite(values)
    v = np.maximum(values[ok], 0.0)
    t = start[ok]
    n = int(v.shape[0])
    if n < min_runs:
        return None
    zero_usual = bool(np.count_nonzero(v == 0) >= ZERO_USUAL_FRACTION * n)
    if zero_usual:
        keep = v > 0
        v, t = v[keep], t[keep]
        if v.shape[0] == 0:
            empty = (None,)
            return MetricModel(metric, 0.0, 0.0, True, n, empty * 24, empty * 7)
    y = np.minimum(np.log1p(v), _KEY_STRIDE - 1)
    recent = t > now - recent_days * DAY
    if int(np.count_nonzero(recent)) < min_runs:
        recent = np.zeros(y.shape[0], dtype=np.bool_)
        recent[-min_runs:] = True
    yr = y[recent]
    center = float(median(yr))
    spread = MAD_SCALE * float(median(np.abs(yr - center)))
    if y.shape[0] > 2:  # the whole window's noise, immune to trend: MAD of differences / √2
        steps = np.diff(y)
        steps_mad = median(np.abs(steps - median(steps)))
        spread = max(spread, MAD_SCALE * steps_mad / math.sqrt(2))
    half_width = max(k * spread, math.log1p(margin))

    hours = (t % DAY // 3600).astype(np.int64)
    days = weekday_of(t).astype(np.int64)
    med, counts = grouped_median(np.concatenate([hours, 24 + days]), np.concatenate([y, y]), 31)
    buckets = tuple(float(med[i]) if counts[i] >= min_bucket else None for i in range(31))
    return MetricModel(
        metric=metric,
        center=center,
        half_width=half_width,
        zero_usual=zero_usual,
        n=int(yr.shape[0]),
        hour_centers=buckets[:24],
        weekday_centers=buckets[24:],
    )
