"""Blind windows: when no replica of Watcher was alive and ingesting, from heartbeat rows.

Every replica records *segments*: one row per uninterrupted stretch of successful heartbeats
(`start` = its first beat, `last_beat` = its latest). A replica that cannot write a beat for
longer than the tolerance (its database was away, or it was paused) starts a new segment on
its next successful beat, so a database outage leaves a hole even though the process lived.

`blind_windows` merges the segments of all replicas and returns the holes between them:
- a hole shorter than or equal to `tolerance` is heartbeat jitter, not blindness;
- the time before the first segment ever is a window (nothing says Watcher was ingesting);
- a hole that has not ended (`now` more than `tolerance` after the latest beat) is an open
  window (`end is None`).

`Gate` is the decision the checks share: evidence lying (partly) in a window is *unknown*
until `catch_up` after the window ended, time for spooled and replayed runs to arrive. After
that the evidence counts again, so a pipeline that truly stopped is reported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Segment:
    """One replica's uninterrupted stretch of heartbeats."""

    start: datetime
    last_beat: datetime


@dataclass(frozen=True, slots=True)
class Window:
    """A stretch in which no replica was ingesting; `start is None`: before the first beat
    ever, `end is None`: still going on."""

    start: datetime | None
    end: datetime | None

    def seconds(self, now: datetime) -> float | None:
        """Length of the window (up to `now` when open); None when it has no start."""
        if self.start is None:
            return None
        return ((self.end or now) - self.start).total_seconds()


def blind_windows(segments: Iterable[Segment], now: datetime, tolerance: timedelta) -> list[Window]:
    """The windows, oldest first, no replica was ingesting in, up to `now`.

    No segment at all means no availability record (the heartbeat never ran, e.g. with the
    scheduler disabled): no window, the checks judge as they always did."""
    ordered = sorted(segments, key=lambda s: s.start)
    if not ordered:
        return []
    windows = [Window(None, ordered[0].start)]
    covered_until = ordered[0].last_beat
    for segment in ordered[1:]:
        if segment.start - covered_until > tolerance:
            windows.append(Window(covered_until, segment.start))
        covered_until = max(covered_until, segment.last_beat)
    if now - covered_until > tolerance:
        windows.append(Window(covered_until, None))
    return windows


@dataclass(frozen=True)
class Gate:
    """Which evidence is unknown at `now`: the windows whose catch-up is not over."""

    windows: Sequence[Window]
    now: datetime
    catch_up: timedelta

    def window_of(self, start: datetime, end: datetime) -> Window | None:
        """The window that makes evidence over [start, end] unknown now, or None.

        A window counts while it is open or until `catch_up` after its end; it touches the
        evidence when the two intervals overlap."""
        for window in self.windows:
            if window.end is not None and self.now >= window.end + self.catch_up:
                continue
            if (window.start is None or window.start < end) and (
                window.end is None or window.end > start
            ):
                return window
        return None

    def split(
        self, findings: Iterable[T], evidence: Callable[[T], tuple[datetime, datetime] | None]
    ) -> tuple[list[T], list[T]]:
        """(kept, suppressed): `evidence(f)` is the interval a finding rests on, None when
        the finding rests on stored data alone (it is always kept)."""
        kept: list[T] = []
        suppressed: list[T] = []
        for finding in findings:
            interval = evidence(finding)
            if interval is not None and self.window_of(*interval) is not None:
                suppressed.append(finding)
            else:
                kept.append(finding)
        return kept, suppressed

    @property
    def catching_up(self) -> bool:
        """True while some window is open or within its catch-up."""
        return any(w.end is None or self.now < w.end + self.catch_up for w in self.windows)

    def last_window(self) -> Window | None:
        """The latest window with a start (a real hole, not the time before the first beat)."""
        real = [w for w in self.windows if w.start is not None]
        return real[-1] if real else None
