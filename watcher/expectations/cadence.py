"""Schedule inference from start times, and the late-start expectation it gives.

All of it is in UTC: slots are ``phase + k·period`` seconds after the Unix epoch (a UTC
midnight), weekdays are UTC weekdays (Monday = 0). A pipeline scheduled at 02:30 local time
is learned as the corresponding UTC time; across a daylight-saving change it moves by an
hour, which shows up as a regime change (see `training`), not as a week of late alerts.

`infer_cadence` (O(n log n) in the number of starts):

1. the median gap between consecutive starts is snapped to the nearest of
   `CANDIDATE_PERIODS` (1–30 minutes, 1–12 hours, a day); more than 25% away → irregular;
2. the phase is the circular mean of ``start mod period`` refined by the median residual,
   so it is the *typical* start time (cron time plus the usual scheduler delay);
3. residuals ``r`` (start minus nearest slot, wrapped to ±period/2) must be tight: a robust
   spread ``1.4826·MAD(r)`` above 10% of the period → irregular;
4. the weekday mask keeps the UTC weekdays on which at least half the slots had a run, and
   the runs must cover at least 70% of the remaining slots (a pipeline that only runs during
   office hours has no single cadence → irregular);
5. the tolerance is the larger of a floor (60 s, 1% of the period), ``k·spread`` and
   ``tail_factor·q99(r)``: the quantile term follows the skewed tail of scheduler delays
   (they are closer to exponential than normal, so a MAD-only rule under-covers them). A
   tolerance above half the period is no usable expectation → None.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np

from watcher.expectations.history import DAY, FloatArray, median, quantile

CANDIDATE_PERIODS: Final = tuple(60.0 * m for m in (1, 2, 5, 10, 15, 20, 30)) + tuple(
    3600.0 * h for h in (1, 2, 3, 4, 6, 8, 12, 24)
)
ALL_DAYS: Final = 0b1111111
WEEKDAYS: Final = 0b0011111  # Monday (bit 0) … Friday (bit 4)
_DAY_NAMES: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MAD_SCALE: Final = 1.4826  # MAD → standard deviation for normal data


def weekday_of(t: FloatArray) -> FloatArray:
    """UTC weekday (Monday = 0) of epoch seconds; 1970-01-01 was a Thursday."""
    days: FloatArray = (np.floor(t / DAY) + 3.0) % 7.0
    return days


def weekday_at(t: float) -> int:
    """UTC weekday (Monday = 0) of one time."""
    return int((math.floor(t / DAY) + 3) % 7)


def format_duration(seconds: float) -> str:
    """Short human duration: "45 s", "4 min", "1.5 h", "2.0 d"."""
    s = abs(seconds)
    if s < 90:
        return f"{s:.0f} s"
    if s < 90 * 60:
        return f"{s / 60:.0f} min"
    if s < 48 * 3600:
        return f"{s / 3600:.1f} h"
    return f"{s / DAY:.1f} d"


def _hhmm(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%H:%M")


def _days_text(mask: int) -> str:
    if mask == ALL_DAYS:
        return ""
    if mask == WEEKDAYS:
        return " on Mon–Fri"
    return " on " + ", ".join(d for i, d in enumerate(_DAY_NAMES) if mask >> i & 1)


@dataclass(frozen=True)
class Cadence:
    """A learned schedule: slots at ``phase_seconds + k·period_seconds`` (UTC epoch) on the
    weekdays of ``weekday_mask`` (bit 0 = Monday); a start later than its slot by more than
    ``tolerance_seconds`` is late."""

    period_seconds: float
    phase_seconds: float
    weekday_mask: int
    tolerance_seconds: float
    spread_seconds: float
    n_runs: int

    @property
    def kind(self) -> str:
        """ "every_n_minutes", "hourly", "every_n_hours", "daily" or "weekdays"."""
        p = self.period_seconds
        if p < 3600:
            return "every_n_minutes"
        if p == 3600:
            return "hourly"
        if p < DAY:
            return "every_n_hours"
        return "weekdays" if self.weekday_mask == WEEKDAYS else "daily"

    def _allowed(self, t: float) -> bool:
        return bool(self.weekday_mask >> weekday_at(t) & 1)

    def slot_near(self, t: float) -> float:
        """The slot nearest to ``t`` (ignoring the weekday mask)."""
        p = self.period_seconds
        return self.phase_seconds + round((t - self.phase_seconds) / p) * p

    def next_expected_start(self, after: float) -> float:
        """The first slot strictly after ``after`` on an allowed weekday."""
        p, phase = self.period_seconds, self.phase_seconds
        t = phase + (math.floor((after - phase) / p) + 1) * p
        for _ in range(8):
            if self._allowed(t):
                return t
            next_day = (math.floor(t / DAY) + 1) * DAY
            t = phase + math.ceil((next_day - phase) / p) * p
        return t  # an empty mask never happens for a learned cadence

    def describe(self) -> str:
        """E.g. "usually starts at 02:30 UTC ± 4 min" or "… at :05 ± 2 min every hour"."""
        tol = format_duration(self.tolerance_seconds)
        days = _days_text(self.weekday_mask)
        p, phase = self.period_seconds, self.phase_seconds
        if p < 3600:
            minutes = sorted({int((phase + k * p) % 3600 // 60) for k in range(int(3600 // p))})
            at = ", ".join(f":{m:02d}" for m in minutes[:6]) + (", …" if len(minutes) > 6 else "")
            return f"usually starts every {p / 60:.0f} min (at {at}) ± {tol}{days}"
        if p == 3600:
            return f"usually starts at :{int(phase // 60):02d} ± {tol} every hour{days}"
        if p < DAY:
            return f"usually starts every {p / 3600:.0f} h at {_hhmm(phase)} UTC ± {tol}{days}"
        return f"usually starts at {_hhmm(phase)} UTC ± {tol}{days}"

    def to_json(self) -> dict[str, Any]:
        return {
            "period_seconds": self.period_seconds,
            "phase_seconds": self.phase_seconds,
            "weekday_mask": self.weekday_mask,
            "tolerance_seconds": self.tolerance_seconds,
            "spread_seconds": self.spread_seconds,
            "n_runs": self.n_runs,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Cadence:
        return cls(
            period_seconds=float(data["period_seconds"]),
            phase_seconds=float(data["phase_seconds"]),
            weekday_mask=int(data["weekday_mask"]),
            tolerance_seconds=float(data["tolerance_seconds"]),
            spread_seconds=float(data["spread_seconds"]),
            n_runs=int(data["n_runs"]),
        )


@dataclass(frozen=True)
class LateStart:
    """The next run was due at ``due`` and has not started ``tolerance`` later."""

    due: float
    deadline: float
    late_by_seconds: float
    missed_slots: int
    text: str


def infer_cadence(
    starts: FloatArray,
    *,
    k_tolerance: float = 10.0,
    tail_factor: float = 3.0,
    min_tolerance_seconds: float = 60.0,
    min_tolerance_fraction: float = 0.01,
    max_spread_fraction: float = 0.1,
    min_coverage: float = 0.7,
) -> Cadence | None:
    """The schedule of sorted start times, or None when they follow none (see module doc)."""
    n = int(starts.shape[0])
    if n < 3:
        return None
    gaps = np.diff(starts)
    g = float(median(gaps))
    if g <= 0:
        return None
    period = min(CANDIDATE_PERIODS, key=lambda p: abs(math.log(g / p)))
    if abs(math.log(g / period)) > math.log(1.25):
        return None
    angle = (starts % period) * (2 * math.pi / period)
    phase0 = math.atan2(float(np.sin(angle).mean()), float(np.cos(angle).mean()))
    phase0 = (phase0 / (2 * math.pi) * period) % period
    r = (starts - phase0 + period / 2) % period - period / 2
    phase = (phase0 + float(median(r))) % period
    r = (starts - phase + period / 2) % period - period / 2
    spread = MAD_SCALE * float(median(np.abs(r - median(r))))
    if spread > max_spread_fraction * period:
        return None

    # Weekday mask and coverage over the slots between the first and the last start.
    k = np.rint((starts - phase) / period).astype(np.int64)
    on_grid = np.abs(r) <= 0.25 * period
    k0, k1 = int(k[0]), int(k[-1])
    if k1 - k0 > 200_000:
        return None
    slots = phase + np.arange(k0, k1 + 1, dtype=np.float64) * period
    slot_days = weekday_of(slots).astype(np.int64)
    slots_per_day = np.bincount(slot_days, minlength=7)
    hit = np.zeros(k1 - k0 + 1, dtype=np.bool_)
    hit[k[on_grid] - k0] = True
    runs_per_day = np.bincount(slot_days[hit], minlength=7)
    allowed = (slots_per_day == 0) | (runs_per_day >= 0.5 * slots_per_day)
    mask = int(sum(1 << d for d in range(7) if allowed[d]))
    if mask == 0:
        return None
    expected = int(slots_per_day[allowed].sum())
    if expected == 0 or runs_per_day[allowed].sum() < min_coverage * expected:
        return None

    late = r[on_grid]
    tail = quantile(late, 0.99) if late.size else 0.0
    tolerance = max(
        min_tolerance_seconds,
        min_tolerance_fraction * period,
        k_tolerance * spread,
        tail_factor * max(tail, 0.0),
    )
    if tolerance > 0.5 * period:
        return None
    return Cadence(
        period_seconds=period,
        phase_seconds=phase,
        weekday_mask=mask,
        tolerance_seconds=tolerance,
        spread_seconds=spread,
        n_runs=n,
    )


def late_start(cadence: Cadence, last_start: float, now: float) -> LateStart | None:
    """Whether the run after ``last_start`` is overdue at ``now``.

    The last run belongs to its nearest slot; the next run is due at the next allowed slot
    and late once ``now`` passes ``due + tolerance``. ``missed_slots`` counts the allowed
    slots whose deadline has passed since (1 = just this one).
    """
    p = cadence.period_seconds
    due = cadence.next_expected_start(cadence.slot_near(last_start) + 0.5 * p)
    deadline = due + cadence.tolerance_seconds
    if now < deadline:
        return None
    missed, t = 1, due
    while missed < 10_000:
        t = cadence.next_expected_start(t + 0.5 * p)
        if t + cadence.tolerance_seconds > now:
            break
        missed += 1
    text = (
        f"{cadence.describe()}; nothing since {_hhmm(due)}"
        f" ({format_duration(now - due)} late" + (f", {missed} runs missed)" if missed > 1 else ")")
    )
    return LateStart(
        due=due, deadline=deadline, late_by_seconds=now - due, missed_slots=missed, text=text
    )
