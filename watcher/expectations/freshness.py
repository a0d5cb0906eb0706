"""How often a pipeline's targets change, and when they have gone stale.

A *change* is a successful run that wrote something (inserts + updates + soft deletes > 0;
when a pipeline reports no DML counts, total_rows > 0 stands in). The expectation is learned
from the gaps between consecutive change times in the training window:

``max_gap = max(g_max + factor · (g_max − g_median), 2 · g_median, floor)``

The longest usual gap ``g_max`` (a weekend for a weekday pipeline, a run of empty increments
for a sparse one) plus ``factor`` (1.5 at medium sensitivity) times how far it lies beyond
the typical gap: a regular pipeline (``g_max ≈ g_median``) gets little margin, a bursty one
(exponential-like gaps, whose longest observed gap underestimates the tail) a lot. ``floor``
is 2.5 periods of the learned schedule when there is one: staleness means at least two
consecutive cycles brought no change — a single missed or failed run is the late-start
detector's business, not freshness's. Gaps that ended a stale episode already alerted on
are dropped when the caller flags the run that ended them (``FLAG_BITS["stale"]``), so a past
incident does not teach a longer normal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from watcher.expectations.cadence import format_duration
from watcher.expectations.history import BoolArray, FloatArray, median


@dataclass(frozen=True)
class FreshnessExpectation:
    """Data is expected to change at least every ``max_gap_seconds``."""

    max_gap_seconds: float
    median_gap_seconds: float
    n_changes: int

    def to_json(self) -> dict[str, Any]:
        return {
            "max_gap_seconds": self.max_gap_seconds,
            "median_gap_seconds": self.median_gap_seconds,
            "n_changes": self.n_changes,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FreshnessExpectation:
        return cls(
            max_gap_seconds=float(data["max_gap_seconds"]),
            median_gap_seconds=float(data["median_gap_seconds"]),
            n_changes=int(data["n_changes"]),
        )


@dataclass(frozen=True)
class Stale:
    """No change since ``last_change``; the expectation's deadline was ``deadline``."""

    last_change: float
    deadline: float
    stale_for_seconds: float
    text: str


def learn_freshness(
    change_times: FloatArray,
    *,
    factor: float = 1.5,
    floor_seconds: float = 0.0,
    min_changes: int = 8,
    excluded_gaps: BoolArray | None = None,
) -> FreshnessExpectation | None:
    """The expectation from sorted change times, None with fewer than ``min_changes``.

    ``excluded_gaps`` (bool per gap, i.e. per change after the first) drops gaps that ended
    a stale episode.
    """
    n = int(change_times.shape[0])
    if n < min_changes:
        return None
    gaps = np.diff(change_times)
    if excluded_gaps is not None:
        gaps = gaps[~excluded_gaps]
    if gaps.shape[0] == 0:
        return None
    median_gap = float(median(gaps))
    longest = float(gaps.max())
    max_gap = max(longest + factor * (longest - median_gap), 2.0 * median_gap, floor_seconds)
    return FreshnessExpectation(max_gap_seconds=max_gap, median_gap_seconds=median_gap, n_changes=n)


def stale(expectation: FreshnessExpectation, last_change: float, now: float) -> Stale | None:
    """Whether the targets are stale at ``now``: last changed more than ``max_gap`` ago."""
    deadline = last_change + expectation.max_gap_seconds
    if now <= deadline:
        return None
    text = (
        f"data usually changes at least every {format_duration(expectation.max_gap_seconds)}"
        f" (typically {format_duration(expectation.median_gap_seconds)});"
        f" last change {format_duration(now - last_change)} ago"
    )
    return Stale(
        last_change=last_change, deadline=deadline, stale_for_seconds=now - last_change, text=text
    )
