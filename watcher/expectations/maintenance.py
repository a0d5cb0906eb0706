"""Declared maintenance windows: which runs and findings they cover (pure, explicit values).

A window is ``[start, end)`` in epoch seconds, declared for one pipeline, a pipeline type or
every pipeline (the I/O side picks the windows that apply to a pipeline). Two rules:

* **Training** leaves out every run that *overlaps* a window (`training.in_windows`): a run
  still running extends to +inf, so one started before a window and still running in it is
  left out too. An incident during maintenance never becomes the new normal.
* **Findings**: while ``now`` is inside a window the learned check finds nothing for the
  pipeline. After a window, a finding that rests on the *absence* of reports (late start,
  overdue run, stale target) counts its wait from the window's end (`resume_from`): the next
  slot after the maintenance is expected, a stale gap restarts at the window's end. A run
  that overlaps a window is never judged anomalous.
"""

from __future__ import annotations

from collections.abc import Iterable

Window = tuple[float, float]


def active(windows: Iterable[Window], now: float) -> bool:
    """True when ``now`` lies inside one of ``windows``."""
    return any(w0 <= now < w1 for w0, w1 in windows)


def overlaps(windows: Iterable[Window], start: float, end: float | None) -> bool:
    """True when a run from ``start`` to ``end`` (None: still running) overlaps a window."""
    until = float("inf") if end is None else end
    return any(start < w1 and until > w0 for w0, w1 in windows)


def resume_from(windows: Iterable[Window], since: float, now: float) -> float | None:
    """Where a wait that began at ``since`` is counted from at ``now``: None while ``now`` is
    inside a window (nothing is found), else ``since`` moved to the end of the latest window
    that ended after it (windows that ended before ``since`` change nothing)."""
    ws = list(windows)
    if active(ws, now):
        return None
    ends = [w1 for w0, w1 in ws if since < w1 <= now]
    return max([since, *ends])
