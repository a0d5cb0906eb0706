"""A labelled synthetic fleet: pipelines, their runs, injected incidents and regime changes.

Every pipeline is generated from ``numpy.random.default_rng([seed, pipeline_id])``, so a
pipeline is the same whatever the fleet size or the worker that builds it. Simulated time
starts at ``T0`` (a Monday, 00:00 UTC); ``warmup_days`` of incident-free history (the
history Watcher finds when it is switched on) precede the ``days`` evaluated.

Fleet mix: 30% hourly, 15% every 15 minutes, 30% daily, 15% weekdays only (daily, Mon–Fri),
10% irregular (exponential gaps, mean 1–6 h). Per pipeline:

* start = cron slot + a fixed delay (0–60 s) + an exponential scheduler delay (mean 5–20 s
  every 15 min, 10–60 s hourly, 1–8 min daily); 1% of runs are *late but fine* (3–6 further
  mean delays); 1% fail (they still started);
* duration and volume: lognormal noise (σ 0.05–0.2 and 0.05–0.25), a weekly pattern (either
  a smooth one of ±0–30% or, for 20% of pipelines, a Monday peak ×1.5–2.5), a slow trend of
  −0.5…+1.5% per day; half append-only (inserts = rows), half merges (70% inserts, 30%
  updates, Poisson deletes); 15% are sparse increments that change data on only 30–80% of
  runs (no new data → 0 rows);
* regime changes (not incidents), in 10% of pipelines: volume doubled for good, or the
  schedule moved (sub-daily → daily at a new time; daily → another time of day);
* incidents, about one a week, ≥ 36 h apart, none in the last day nor within 2 days of a
  regime change: ``missed`` (the run never starts; time = its usual start), ``late``
  (starts late: 50–80% of the period every 15 min, 20–45 min hourly, 2–6 h daily; time =
  its usual start), ``stuck`` (never ends; time = start), ``slow`` (duration ×4–8; time =
  start), ``empty`` (0 rows; time = end), ``spike`` (volume ×50; time = end), ``stale`` (for
  1–3 days runs succeed but write nothing; time = end of the first such run).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

DAY: Final = 86400.0
T0: Final = 1_767_571_200.0  # 2026-01-05 00:00 UTC, a Monday
KINDS: Final = ("missed", "late", "stuck", "slow", "empty", "spike", "stale")


@dataclass(frozen=True)
class Incident:
    kind: str
    time: float
    window_end: float


@dataclass(frozen=True)
class RegimeEvent:
    kind: str
    time: float


@dataclass(frozen=True, eq=False)
class SimPipeline:
    """One pipeline's simulated runs (sorted by start) and its ground truth."""

    pid: int
    schedule: str
    period: float  # cron period; mean gap when irregular
    weekday_only: bool
    typical_duration: float
    slots: FloatArray  # true cron slots (after a schedule move: the new ones); empty if irregular
    start: FloatArray
    end: FloatArray  # NaN: never ends
    success: BoolArray
    duration: FloatArray
    total_rows: FloatArray
    inserts: FloatArray
    updates: FloatArray
    soft_deletes: FloatArray
    incidents: tuple[Incident, ...]
    regimes: tuple[RegimeEvent, ...]
    eval_start: float
    eval_end: float


def _slots(period: float, phase: float, t0: float, t1: float, weekday_only: bool) -> FloatArray:
    k0, k1 = math.ceil((t0 - phase) / period), math.floor((t1 - phase) / period)
    s = phase + np.arange(k0, k1 + 1, dtype=np.float64) * period
    if weekday_only:
        s = s[((np.floor(s / DAY) + 3) % 7) < 5]
    return s


def generate(pid: int, seed: int, days: float, warmup_days: float = 21.0) -> SimPipeline:
    """Pipeline ``pid`` of the fleet of ``seed`` over ``warmup_days + days`` (module doc)."""
    rng = np.random.default_rng([seed, pid])
    begin, t_eval, t_end = T0 - warmup_days * DAY, T0, T0 + days * DAY
    u = float(rng.random())
    schedule = (
        "hourly" if u < 0.30 else "15min" if u < 0.45 else "daily" if u < 0.75
        else "weekdays" if u < 0.90 else "irregular"
    )  # fmt: skip
    period = {"hourly": 3600.0, "15min": 900.0, "daily": DAY, "weekdays": DAY}.get(
        schedule, 3600.0 * float(rng.uniform(1, 6))
    )
    weekday_only = schedule == "weekdays"
    jitter = {"15min": (5, 20), "hourly": (10, 60)}.get(schedule, (60, 480))
    sigma_j = float(rng.uniform(*jitter))
    delay = float(rng.uniform(0, 60))
    phase = float(rng.integers(0, int(period // 60))) * 60 if schedule != "irregular" else 0.0

    # Regime change (10% of pipelines), away from the evaluation's edges.
    regimes: list[RegimeEvent] = []
    if rng.random() < 0.10:
        at = t_eval + float(rng.uniform(0.2, 0.7)) * (t_end - t_eval)
        kind = "schedule" if schedule != "irregular" and rng.random() < 0.5 else "volume"
        regimes.append(RegimeEvent(kind, at))
    moved = next((r.time for r in regimes if r.kind == "schedule"), None)

    if schedule == "irregular":
        gaps = rng.exponential(period, int((t_end - begin) / period * 2) + 10)
        starts = begin + np.cumsum(gaps)
        starts = starts[starts < t_end]
        slots = np.zeros(0)
        usual = starts.copy()
    else:
        if moved is None:
            slots = _slots(period, phase, begin, t_end, weekday_only)
        else:
            new_phase = float(rng.integers(0, 24 * 60)) * 60.0
            old = _slots(period, phase, begin, moved, weekday_only)
            slots = np.concatenate([old, _slots(DAY, new_phase, moved, t_end, weekday_only)])
        usual = slots + delay + math.log(2) * sigma_j  # the median start of each slot
        starts = slots + delay + rng.exponential(sigma_j, slots.shape[0])
        fine_late = rng.random(slots.shape[0]) < 0.01
        starts[fine_late] += rng.uniform(3, 6, int(fine_late.sum())) * sigma_j
    n = int(starts.shape[0])

    base_d = float(np.exp(rng.uniform(*{"15min": (3.0, 5.7), "hourly": (4.1, 7.3)}.get(
        schedule, (5.7, 8.6)))))  # fmt: skip
    rows = 10 ** float(rng.uniform(2, 6))
    sd, sv = float(rng.uniform(0.05, 0.2)), float(rng.uniform(0.05, 0.25))
    dow = (np.floor(starts / DAY) + 3) % 7
    if rng.random() < 0.2:
        season = np.where(dow == 0, float(rng.uniform(1.5, 2.5)), 1.0)
    else:
        amp, d0 = float(rng.uniform(0, 0.3)), float(rng.uniform(0, 7))
        season = 1 + amp * np.cos(2 * np.pi * (dow - d0) / 7)
    trend = np.exp(float(rng.uniform(-0.005, 0.015)) * (starts - begin) / DAY)
    level = trend * season
    for r in regimes:
        if r.kind == "volume":
            level = np.where(starts >= r.time, level * 2.0, level)
    volume = rows * level * rng.lognormal(0, sv, n)
    duration = base_d * np.sqrt(level) * rng.lognormal(0, sd, n)
    merge = rng.random() < 0.5
    p_change = float(rng.uniform(0.3, 0.8)) if rng.random() < 0.15 else 1.0
    changes = rng.random(n) < p_change
    volume = np.where(changes, np.maximum(np.round(volume), 1.0), 0.0)
    if merge:
        ins = np.round(volume * 0.7 * rng.lognormal(0, 0.1, n))
        upd = np.round(volume * 0.3 * rng.lognormal(0, 0.1, n))
        dele = np.where(changes, rng.poisson(float(rng.uniform(0, 5)), n), 0).astype(np.float64)
    else:
        ins, upd, dele = volume.copy(), np.zeros(n), np.zeros(n)
    success = rng.random(n) >= 0.01
    end = starts + duration
    keep = np.ones(n, dtype=np.bool_)

    # Incidents: times on the evaluation window, spaced, away from regime changes.
    incidents: list[Incident] = []
    taken: list[float] = [r.time for r in regimes]
    kinds = [k for k in KINDS if schedule != "irregular" or k not in ("missed", "late")]
    if p_change < 1:
        kinds = [k for k in kinds if k != "empty"]
    horizon = max(6 * 3600.0, 4 * period)
    for _ in range(int(rng.poisson(days / 7))):
        for _attempt in range(20):
            t = float(rng.uniform(t_eval + 3600, t_end - DAY))
            if all(abs(t - x) > 1.5 * DAY for x in taken):
                break
        else:
            continue
        i = int(np.searchsorted(starts, t))
        if i >= n or not success[i] or not changes[i] or not keep[i]:
            continue
        taken.append(t)
        kind = str(rng.choice(kinds))
        if kind == "missed":
            keep[i] = False
            incidents.append(Incident(kind, float(usual[i]), float(usual[i]) + horizon))
        elif kind == "late":
            late = {"15min": (0.5 * period, 0.8 * period), "hourly": (1200.0, 2700.0)}.get(
                schedule, (7200.0, 21600.0))  # fmt: skip
            shift = float(rng.uniform(*late))
            starts[i] = usual[i] + shift
            end[i] = starts[i] + duration[i]
            incidents.append(Incident(kind, float(usual[i]), float(usual[i]) + horizon))
        elif kind == "stuck":
            end[i], success[i] = np.nan, False
            incidents.append(Incident(kind, float(starts[i]), float(starts[i]) + horizon))
        elif kind == "slow":
            duration[i] *= float(rng.uniform(4, 8))
            end[i] = starts[i] + duration[i]
            incidents.append(Incident(kind, float(starts[i]), float(starts[i]) + horizon))
        elif kind in ("empty", "spike"):
            f = 0.0 if kind == "empty" else 50.0
            volume[i], ins[i], upd[i], dele[i] = volume[i] * f, ins[i] * f, upd[i] * f, dele[i] * f
            incidents.append(Incident(kind, float(end[i]), float(end[i]) + horizon))
        else:  # stale: writes stop for 1–3 days (sparse pipelines also read nothing)
            length = float(rng.uniform(1, 3)) * DAY
            hit = (starts >= starts[i]) & (starts < starts[i] + length)
            ins[hit], upd[hit], dele[hit] = 0.0, 0.0, 0.0
            if p_change < 1:
                volume[hit] = 0.0
            taken.append(float(starts[i]) + length)
            incidents.append(Incident(kind, float(end[i]), float(end[i]) + length + 2 * DAY))

    failed = ~success & np.isfinite(end)
    for col in (volume, ins, upd, dele):
        col[failed] = np.nan
    order = np.argsort(np.where(keep, starts, np.inf), kind="stable")[: int(keep.sum())]
    return SimPipeline(
        pid=pid,
        schedule=schedule,
        period=period,
        weekday_only=weekday_only,
        typical_duration=base_d,
        slots=slots[(slots >= t_eval) & (slots < t_end)],
        start=starts[order],
        end=end[order],
        success=success[order],
        duration=np.where(np.isfinite(end), end - starts, np.nan)[order],
        total_rows=volume[order],
        inserts=ins[order],
        updates=upd[order],
        soft_deletes=dele[order],
        incidents=tuple(sorted(incidents, key=lambda x: x.time)),
        regimes=tuple(regimes),
        eval_start=t_eval,
        eval_end=t_end,
    )
