"""The input of learning: one pipeline's recent runs as a columnar bundle of numpy arrays.

Times are epoch seconds (float64, UTC). A run still running (or whose end was never reported)
has ``end = NaN``, ``success = False`` and NaN metrics. Metrics that a pipeline does not report
are NaN. The bundle is *bounded* by the caller: at most `DEFAULT_MAX_RUNS` runs and
`DEFAULT_WINDOW_DAYS` days before ``now`` (`History.bounded` applies both), so learning costs
O(W log W) however much history is stored.

Feedback from earlier evaluations travels in two per-run columns:

* ``flags`` — a bitmask of what the system flagged on that run (`FLAG_BITS`: a late start, a
  metric outside its band, "stale" on the change that ended a stale episode). A flagged run
  is left out of training *for what was flagged* (a run with an anomalous duration still
  teaches the schedule), unless the user said ``fine``;
* ``excluded`` — the user excluded the run from training altogether; ``fine`` — the user
  marked a flagged run as "this is fine" (force-include; it does not undo ``excluded``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

METRICS: Final = ("duration_seconds", "total_rows", "inserts", "updates", "soft_deletes")
"""The metrics that get a band, in a fixed order."""

VOLUME_METRICS: Final = ("total_rows", "inserts", "updates", "soft_deletes")
DML_METRICS: Final = ("inserts", "updates", "soft_deletes")

FLAG_BITS: Final[Mapping[str, int]] = {
    "start": 1,
    "duration_seconds": 2,
    "total_rows": 4,
    "inserts": 8,
    "updates": 16,
    "soft_deletes": 32,
    "stale": 64,
}
"""Bit of ``History.flags`` per flagged aspect of a run."""

DEFAULT_WINDOW_DAYS: Final = 35.0
"""D: 5 weeks — 5 samples of each weekday, enough for day-of-week buckets (≥ 3 each)."""
DEFAULT_MAX_RUNS: Final = 2000
"""W: ~3 weeks of a 15-minute pipeline, 12 weeks of an hourly one."""

DAY: Final = 86400.0


def median(values: FloatArray) -> float:
    """Median of a non-empty array, by one sort (faster than ``np.median`` at these sizes)."""
    s = np.sort(values)
    n = int(s.shape[0])
    return float(s[(n - 1) // 2] + s[n // 2]) / 2.0


def quantile(values: FloatArray, q: float) -> float:
    """Linear-interpolated ``q`` quantile of a non-empty array (numpy's default method)."""
    s = np.sort(values)
    pos = q * (s.shape[0] - 1)
    i = int(pos)
    j = min(i + 1, int(s.shape[0]) - 1)
    return float(s[i] + (s[j] - s[i]) * (pos - i))


def _col(values: npt.ArrayLike | None, n: int, fill: float) -> FloatArray:
    if values is None:
        return np.full(n, fill, dtype=np.float64)
    out = np.asarray(values, dtype=np.float64).reshape(-1)
    if out.shape[0] != n:
        raise ValueError(f"column has {out.shape[0]} values, expected {n}")
    return out


def _bool(values: npt.ArrayLike | None, n: int) -> BoolArray:
    if values is None:
        return np.zeros(n, dtype=np.bool_)
    out = np.asarray(values, dtype=np.bool_).reshape(-1)
    if out.shape[0] != n:
        raise ValueError(f"column has {out.shape[0]} values, expected {n}")
    return out


@dataclass(frozen=True, eq=False)
class History:
    """Columnar runs of one pipeline, sorted by start. Build it with `History.of`."""

    start: FloatArray
    end: FloatArray
    success: BoolArray
    duration_seconds: FloatArray
    total_rows: FloatArray
    inserts: FloatArray
    updates: FloatArray
    soft_deletes: FloatArray
    flags: IntArray
    excluded: BoolArray
    fine: BoolArray

    @classmethod
    def of(
        cls,
        start: npt.ArrayLike,
        *,
        end: npt.ArrayLike | None = None,
        success: npt.ArrayLike | None = None,
        duration_seconds: npt.ArrayLike | None = None,
        total_rows: npt.ArrayLike | None = None,
        inserts: npt.ArrayLike | None = None,
        updates: npt.ArrayLike | None = None,
        soft_deletes: npt.ArrayLike | None = None,
        flags: npt.ArrayLike | None = None,
        excluded: npt.ArrayLike | None = None,
        fine: npt.ArrayLike | None = None,
    ) -> History:
        """Validate lengths, fill absent columns (NaN / False / 0) and sort by start.

        ``success`` defaults to "ended" (finite ``end``); ``duration_seconds`` defaults to
        ``end - start``.
        """
        s = np.asarray(start, dtype=np.float64).reshape(-1)
        n = s.shape[0]
        e = _col(end, n, np.nan)
        ok = np.isfinite(e) if success is None else _bool(success, n)
        d = e - s if duration_seconds is None else _col(duration_seconds, n, np.nan)
        f = np.zeros(n, np.int64) if flags is None else np.asarray(flags, np.int64).reshape(-1)
        if f.shape[0] != n:
            raise ValueError(f"flags has {f.shape[0]} values, expected {n}")
        order = np.argsort(s, kind="stable")
        return cls(
            start=s[order],
            end=e[order],
            success=ok[order],
            duration_seconds=d[order],
            total_rows=_col(total_rows, n, np.nan)[order],
            inserts=_col(inserts, n, np.nan)[order],
            updates=_col(updates, n, np.nan)[order],
            soft_deletes=_col(soft_deletes, n, np.nan)[order],
            flags=f[order],
            excluded=_bool(excluded, n)[order],
            fine=_bool(fine, n)[order],
        )

    def __len__(self) -> int:
        return int(self.start.shape[0])

    def metric(self, name: str) -> FloatArray:
        """The column of one of `METRICS`."""
        if name not in METRICS:
            raise KeyError(name)
        column: FloatArray = getattr(self, name)
        return column

    def take(self, index: slice | IntArray | BoolArray) -> History:
        """The runs selected by ``index`` (a slice keeps views, no copies)."""
        return History(
            start=self.start[index],
            end=self.end[index],
            success=self.success[index],
            duration_seconds=self.duration_seconds[index],
            total_rows=self.total_rows[index],
            inserts=self.inserts[index],
            updates=self.updates[index],
            soft_deletes=self.soft_deletes[index],
            flags=self.flags[index],
            excluded=self.excluded[index],
            fine=self.fine[index],
        )

    def bounded(
        self,
        now: float,
        *,
        window_days: float = DEFAULT_WINDOW_DAYS,
        max_runs: int = DEFAULT_MAX_RUNS,
    ) -> History:
        """Runs that started in ``(now - window_days, now]``, at most the last ``max_runs``."""
        lo = int(np.searchsorted(self.start, now - window_days * DAY, side="right"))
        hi = int(np.searchsorted(self.start, now, side="right"))
        return self.take(slice(max(lo, hi - max_runs), hi))

    def flagged(self, aspect: str) -> BoolArray:
        """Runs flagged for ``aspect`` (a key of `FLAG_BITS`) and not marked fine."""
        flagged: BoolArray = (self.flags & FLAG_BITS[aspect]) != 0
        return flagged & ~self.fine
