"""Running the detectors over a simulated timeline, with a moved clock (never wall time).

Checks happen every `CHECK_INTERVAL` (5 min) of simulated time, on ticks aligned to the
epoch. The learned method is retrained at every simulated hour, from the runs known at that
hour only (a run still running at that hour has no end and no metrics yet), and only when
something changed since the last training (a start, an end or a flag). Between two events
(a start or an end) nothing a check looks at changes, so instead of visiting every tick the
simulation computes each condition's deadline and raises the alert at the first tick at or
after it, if that tick comes before the next event (event-driven; same result as ticking).

The flags the caller would store are fed back into training, as a deployment would: the
metric bits of a run with an anomaly, the start bit of a run that started after a late
alert, the stale bit of the change that ended a stale episode. A run already reported overdue
gets no second (duration) alert when it ends long: the same condition, said once.

Every method returns `SimAlert`s; ``key`` identifies the condition (the last start for a
late alert, the run for a run's anomaly, the last change for staleness) so that scoring can
count an ongoing condition once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np

from benchmarks.accuracy.generator import DAY, FloatArray, SimPipeline
from watcher.expectations import (
    FLAG_BITS,
    VOLUME_METRICS,
    Expectations,
    History,
    LearnSettings,
    evaluate_run,
    late_start,
    learn,
)

CHECK_INTERVAL: Final = 300.0
ZSCORE_LOOKBACK: Final = 30 * DAY
ZSCORE_MIN_RUNS: Final = 10
ZSCORE_Z: Final = 2.0


@dataclass(frozen=True)
class SimAlert:
    kind: str  # "late", "overdue", "duration", "volume", "stale"
    time: float
    key: int
    tolerance: float = math.nan


def tick(t: float) -> float:
    """The first check tick at or after ``t``."""
    return math.ceil(t / CHECK_INTERVAL) * CHECK_INTERVAL


def _values(p: SimPipeline, i: int) -> dict[str, float]:
    return {
        "duration_seconds": float(p.duration[i]),
        "total_rows": float(p.total_rows[i]),
        "inserts": float(p.inserts[i]),
        "updates": float(p.updates[i]),
        "soft_deletes": float(p.soft_deletes[i]),
    }


def _changed(p: SimPipeline, i: int) -> bool:
    return bool(p.success[i]) and float(p.inserts[i] + p.updates[i] + p.soft_deletes[i]) > 0


def _history(p: SimPipeline, flags: np.ndarray, now: float, window_days: float) -> History:
    lo = int(np.searchsorted(p.start, now - window_days * DAY, side="right"))
    hi = int(np.searchsorted(p.start, now, side="right"))
    end = p.end[lo:hi]
    known = end <= now

    def m(col: FloatArray) -> FloatArray:
        return np.where(known, col[lo:hi], np.nan)

    n = hi - lo
    return History(
        start=p.start[lo:hi],
        end=np.where(known, end, np.nan),
        success=p.success[lo:hi] & known,
        duration_seconds=m(p.duration),
        total_rows=m(p.total_rows),
        inserts=m(p.inserts),
        updates=m(p.updates),
        soft_deletes=m(p.soft_deletes),
        flags=flags[lo:hi].copy(),
        excluded=np.zeros(n, dtype=np.bool_),
        fine=np.zeros(n, dtype=np.bool_),
    )


def run_learned(p: SimPipeline, settings: LearnSettings | None = None) -> list[SimAlert]:
    """The learned expectations over the pipeline's evaluation window (module doc)."""
    settings = settings or LearnSettings()
    n = int(p.start.shape[0])
    flags = np.zeros(n, dtype=np.int64)
    end_sorted = np.sort(np.where(np.isfinite(p.end), p.end, np.inf))
    alerts: list[SimAlert] = []
    t = p.eval_start
    started = int(np.searchsorted(p.start, t, side="right"))
    running = {i for i in range(started) if not p.end[i] <= t}
    changes = [i for i in range(started) if p.end[i] <= t and _changed(p, i)]
    last_change = float(p.end[changes[-1]]) if changes else -math.inf
    late_for, stale_for = -1, -math.inf
    overdue_done: set[int] = set()
    trained_key: tuple[int, int, int] | None = None
    version = 0
    model: Expectations | None = None
    hour = p.eval_start
    while hour < p.eval_end:
        nxt = hour + 3600.0
        key = (started, int(np.searchsorted(end_sorted, hour, side="right")), version)
        if key != trained_key:
            model = learn(_history(p, flags, hour, settings.window_days), hour, settings)
            trained_key = key
        assert model is not None
        events: list[tuple[float, int, int]] = []  # (time, 0 = end / 1 = start, run)
        j = started
        while j < n and p.start[j] < nxt:
            events.append((float(p.start[j]), 1, j))
            j += 1
        for i in list(running) + list(range(started, j)):
            if hour <= p.end[i] < nxt:
                events.append((float(p.end[i]), 0, i))
        events.sort()
        a = hour
        for ev_time, ev_kind, i in [*events, (nxt, 2, -1)]:
            b = min(ev_time, nxt)
            cad = model.cadence
            last = started - 1
            if cad is not None and last >= 0 and late_for != last:
                late = late_start(cad, float(p.start[last]), b)
                if late is not None:
                    at = tick(max(late.deadline, a))
                    if at < b:
                        alerts.append(SimAlert("late", at, last, cad.tolerance_seconds))
                        late_for = last
            for r in running - overdue_done:
                band = model.band("duration_seconds", float(p.start[r]))
                if band is None:
                    continue
                at = tick(max(float(p.start[r]) + band.high, a))
                if at < b:
                    alerts.append(SimAlert("overdue", at, r))
                    overdue_done.add(r)
            fresh = model.freshness
            if fresh is not None and last_change > -math.inf and stale_for != last_change:
                at = tick(max(last_change + fresh.max_gap_seconds, a))
                if at < b:
                    alerts.append(SimAlert("stale", at, int(last_change)))
                    stale_for = last_change
            if ev_kind == 2:
                break
            if ev_kind == 1:
                if late_for == started - 1 and started >= 1:
                    flags[i] |= FLAG_BITS["start"]
                    version += 1
                running.add(i)
                started = i + 1
            else:
                running.discard(i)
                if p.success[i]:
                    at = tick(float(p.end[i]))
                    anomalies = evaluate_run(model, float(p.start[i]), _values(p, i))
                    for an in anomalies:
                        flags[i] |= FLAG_BITS[an.metric]
                    if anomalies:
                        version += 1
                        slow = any(an.metric == "duration_seconds" for an in anomalies)
                        if slow and i not in overdue_done:  # else: the overdue alert said it
                            alerts.append(SimAlert("duration", at, i))
                        if any(an.metric in VOLUME_METRICS for an in anomalies):
                            alerts.append(SimAlert("volume", at, i))
                    if _changed(p, i):
                        if stale_for == last_change:
                            flags[i] |= FLAG_BITS["stale"]
                            version += 1
                        last_change = float(p.end[i])
            a = b
        hour = nxt
    return alerts


def run_zscore(p: SimPipeline) -> list[SimAlert]:
    """The original Watcher method: per metric, successful runs that started in the same UTC
    hour and ended in the 30 days before, not flagged for that metric; mean and sample
    standard deviation; at least 10 runs; flat baselines skipped; anomalous when outside
    ``[max(0, mean − 2·sd), mean + 2·sd]``. Duration and volume only."""
    metrics = ("duration_seconds", *VOLUME_METRICS)
    cols = [p.duration, p.total_rows, p.inserts, p.updates, p.soft_deletes]
    ok = p.success & np.isfinite(p.end)
    hours = (p.start % DAY // 3600).astype(np.int64)
    flagged = np.zeros((len(metrics), p.start.shape[0]), dtype=np.bool_)
    alerts: list[SimAlert] = []
    order = np.argsort(np.where(ok, p.end, np.inf), kind="stable")[: int(ok.sum())]
    for i in order.tolist():
        e = float(p.end[i])
        if e < p.eval_start or e >= p.eval_end:
            continue
        peers = ok & (hours == hours[i]) & (p.end < e) & (p.end >= e - ZSCORE_LOOKBACK)
        kinds = set()
        for m, col in enumerate(cols):
            base = col[peers & ~flagged[m]]
            base = base[np.isfinite(base)]
            if base.shape[0] < ZSCORE_MIN_RUNS or base.min() == base.max():
                continue
            mean, sd = float(base.mean()), float(base.std(ddof=1))
            v = float(col[i])
            if v < max(0.0, mean - ZSCORE_Z * sd) or v > mean + ZSCORE_Z * sd:
                flagged[m, i] = True
                kinds.add("duration" if m == 0 else "volume")
        alerts.extend(SimAlert(k, tick(e), i) for k in sorted(kinds))
    return alerts


def run_rules(p: SimPipeline) -> list[SimAlert]:
    """Fixed rules a user would configure (see the package doc for the exact rules)."""
    alerts: list[SimAlert] = []
    # Missed runs from the true cron: no start within [slot − 1 min, slot + 15 min].
    grace = 900.0
    for s in p.slots.tolist():
        i = int(np.searchsorted(p.start, s - 60.0))
        if i < p.start.shape[0] and p.start[i] <= s + grace:
            continue
        alerts.append(SimAlert("late", tick(s + grace), i - 1))
    # Timeliness: running for more than 2× the typical duration.
    limit = 2.0 * p.typical_duration
    for i in range(p.start.shape[0]):
        at = tick(float(p.start[i]) + limit)
        if p.eval_start <= at < p.eval_end and not p.end[i] <= at:
            alerts.append(SimAlert("overdue", at, i))
    # Empty load: a successful run with 0 rows.
    for i in np.flatnonzero(p.success & (p.total_rows == 0)).tolist():
        if p.eval_start <= p.end[i] < p.eval_end:
            alerts.append(SimAlert("volume", tick(float(p.end[i])), i))
    # Freshness: 25 h without a change (73 h for weekday-only pipelines).
    max_gap = (73.0 if p.weekday_only else 25.0) * 3600.0
    changed = np.flatnonzero(
        p.success & np.isfinite(p.end) & ((p.inserts + p.updates + p.soft_deletes) > 0)
    )
    times = np.sort(p.end[changed])
    bounds = np.append(times, p.eval_end)
    for k in range(times.shape[0]):
        deadline = tick(float(times[k]) + max_gap)
        if deadline < bounds[k + 1] and p.eval_start <= deadline < p.eval_end:
            alerts.append(SimAlert("stale", deadline, int(times[k])))
    return alerts
