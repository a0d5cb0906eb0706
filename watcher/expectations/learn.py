"""`learn`: one pipeline's bounded history → its `Expectations`; `check` / `evaluate_run`.

``learn(history, now, settings)`` is pure (no I/O, no clock): the same inputs give the same
expectations. It costs a few sorts of the bounded window — O(W log W) for W ≤ 2,000 runs,
about a millisecond — so it can run for every pipeline every hour. Steps:

1. bound the history (`History.bounded`) and apply the training rules (`training`);
2. schedule: `infer_cadence` on the unflagged starts; minimum history; if the last K starts
   are off-cadence, relearn from that change point;
3. bands: per metric, `learn_band` on unflagged successful values, holding out the last K
   values as the regime test (`level_shift`); on a shift the band is relearned from the
   shifted older values plus the held-out ones;
4. freshness: `learn_freshness` on change times (after a schedule change point).

What is missing and why is in ``Expectations.notes``. `Expectations.to_json` gives a plain
JSON object (floats, ints, strings, lists) for a PostgreSQL JSONB column.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from watcher.expectations.bands import Anomaly, Band, MetricModel, Overdue, evaluate, learn_band
from watcher.expectations.bands import overdue as overdue_check
from watcher.expectations.cadence import Cadence, LateStart, infer_cadence, late_start
from watcher.expectations.freshness import FreshnessExpectation, Stale, learn_freshness, stale
from watcher.expectations.history import DAY, DML_METRICS, METRICS, FloatArray, History
from watcher.expectations.training import (
    LearnSettings,
    base_mask,
    cadence_change_point,
    has_min_history,
    level_shift,
    shift_values,
)

JSON_VERSION: Final = 1
Alert = LateStart | Overdue | Stale


@dataclass(frozen=True)
class RegimeChange:
    """A permanent change adopted while learning: ``aspect`` is "schedule" or a metric."""

    aspect: str
    at: float
    log_shift: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"aspect": self.aspect, "at": self.at, "log_shift": self.log_shift}


@dataclass(frozen=True)
class Expectations:
    """Everything learned for one pipeline at ``trained_at``; any part may be None/absent."""

    trained_at: float
    sensitivity: str
    n_runs: int
    cadence: Cadence | None
    bands: tuple[MetricModel, ...]
    freshness: FreshnessExpectation | None
    regime_changes: tuple[RegimeChange, ...] = ()
    notes: tuple[str, ...] = ()

    def model(self, metric: str) -> MetricModel | None:
        return next((m for m in self.bands if m.metric == metric), None)

    def band(self, metric: str, at: float) -> Band | None:
        """The band of ``metric`` for a run that starts at ``at``."""
        m = self.model(metric)
        return None if m is None else m.band_at(at)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": JSON_VERSION,
            "trained_at": self.trained_at,
            "sensitivity": self.sensitivity,
            "n_runs": self.n_runs,
            "cadence": None if self.cadence is None else self.cadence.to_json(),
            "bands": [m.to_json() for m in self.bands],
            "freshness": None if self.freshness is None else self.freshness.to_json(),
            "regime_changes": [r.to_json() for r in self.regime_changes],
            "notes": list(self.notes),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str) -> Expectations:
        d: Mapping[str, Any] = json.loads(data) if isinstance(data, str) else data
        if d.get("version") != JSON_VERSION:
            raise ValueError(f"unsupported expectations version {d.get('version')!r}")
        return cls(
            trained_at=float(d["trained_at"]),
            sensitivity=str(d["sensitivity"]),
            n_runs=int(d["n_runs"]),
            cadence=None if d["cadence"] is None else Cadence.from_json(d["cadence"]),
            bands=tuple(MetricModel.from_json(m) for m in d["bands"]),
            freshness=None
            if d["freshness"] is None
            else FreshnessExpectation.from_json(d["freshness"]),
            regime_changes=tuple(
                RegimeChange(str(r["aspect"]), float(r["at"]), float(r["log_shift"]))
                for r in d["regime_changes"]
            ),
            notes=tuple(str(n) for n in d["notes"]),
        )


def _learn_cadence(
    h: History, base: np.ndarray[Any, np.dtype[np.bool_]], settings: LearnSettings
) -> tuple[Cadence | None, float | None, list[str]]:
    p = settings.params

    def infer(starts: FloatArray) -> tuple[Cadence | None, str | None]:
        c = infer_cadence(starts, k_tolerance=p.tolerance_k, tail_factor=p.tail_factor)
        if c is None:
            return None, f"schedule: none found in {starts.shape[0]} starts (irregular)"
        why = has_min_history(starts, c.period_seconds, settings)
        return (None, why) if why else (c, None)

    cadence, why = infer(h.start[base & ~h.flagged("start")])
    notes = [why] if why else []
    if cadence is None:
        return None, None, notes
    change = cadence_change_point(cadence, h.start[base], settings.regime_runs)
    if change is None:
        return cadence, None, notes
    cadence, why = infer(h.start[base & (h.start >= change)])
    notes.append(f"schedule: changed at {change:.0f}; relearning from there")
    if why:
        notes.append(why)
    return cadence, change, notes


def _learn_metric(
    h: History,
    ok: np.ndarray[Any, np.dtype[np.bool_]],
    metric: str,
    now: float,
    settings: LearnSettings,
) -> tuple[MetricModel | None, RegimeChange | None]:
    p, k = settings.params, settings.regime_runs
    values = h.metric(metric)
    candidates = np.flatnonzero(ok & np.isfinite(values))
    held = candidates[-k:] if candidates.shape[0] > settings.band_min_runs else candidates[:0]
    train = ok & np.isfinite(values) & ~h.flagged(metric)
    train[held] = False
    kw: dict[str, Any] = {
        "k": p.band_k,
        "margin": p.band_margin,
        "min_runs": settings.band_min_runs,
    }
    model = learn_band(metric, h.start[train], values[train], now, **kw)
    if model is None or held.shape[0] < k:
        return model, None
    found = level_shift(model, h.start[candidates], values[candidates], k)
    if found is None:
        return model, None
    length, shift = found
    post = candidates[-length:]
    pre = np.flatnonzero(train[: post[0]])
    both = np.concatenate([pre, post])
    shifted = np.concatenate([shift_values(values[pre], shift), values[post]])
    model = learn_band(metric, h.start[both], shifted, now, **kw)
    return model, RegimeChange(metric, float(h.start[post[0]]), shift)


def _change_times(
    h: History, ok: np.ndarray[Any, np.dtype[np.bool_]]
) -> tuple[FloatArray, np.ndarray[Any, np.dtype[np.bool_]]]:
    dml = np.stack([h.metric(m) for m in DML_METRICS])
    reported = np.isfinite(dml).any(axis=0)
    changed = np.where(reported, np.nansum(dml, axis=0) > 0, h.total_rows > 0)
    sel = ok & changed & np.isfinite(h.end)
    order = np.argsort(h.end[sel], kind="stable")
    return h.end[sel][order], h.flagged("stale")[sel][order]


def learn(history: History, now: float, settings: LearnSettings | None = None) -> Expectations:
    """Learn one pipeline's expectations at ``now`` from its bounded history (module doc)."""
    settings = settings or LearnSettings()
    p = settings.params
    h = history.bounded(now, window_days=settings.window_days, max_runs=settings.max_runs)
    base = base_mask(h, now, settings)
    cadence, change, notes = _learn_cadence(h, base, settings)
    regimes = [] if change is None else [RegimeChange("schedule", change)]

    ok = base & h.success & np.isfinite(h.end) & (h.end <= now)
    models: list[MetricModel] = []
    for metric in METRICS:
        model, regime = _learn_metric(h, ok, metric, now, settings)
        if model is None:
            if np.isfinite(h.metric(metric)[ok]).any():
                notes.append(f"{metric}: fewer than {settings.band_min_runs} training values")
            continue
        models.append(model)
        if regime is not None:
            regimes.append(regime)

    fresh_ok = ok if change is None else ok & (h.start >= change)
    times, ended_stale = _change_times(h, fresh_ok)
    freshness = None
    if times.shape[0] and times[-1] - times[0] >= settings.min_span_days * DAY:
        floor = 0.0 if cadence is None else 2.5 * cadence.period_seconds
        freshness = learn_freshness(
            times,
            factor=p.freshness_factor,
            floor_seconds=floor,
            min_changes=settings.min_changes,
            excluded_gaps=ended_stale[1:],
        )
    if freshness is None:
        notes.append(f"freshness: {times.shape[0]} changes, need {settings.min_changes} over 7 d")
    return Expectations(
        trained_at=now,
        sensitivity=settings.sensitivity,
        n_runs=len(h),
        cadence=cadence,
        bands=tuple(models),
        freshness=freshness,
        regime_changes=tuple(regimes),
        notes=tuple(notes),
    )


def evaluate_run(
    expectations: Expectations, start: float, values: Mapping[str, float]
) -> tuple[Anomaly, ...]:
    """Anomalies of a finished successful run (metric name → value) against its bands."""
    out = []
    for metric, value in values.items():
        band = expectations.band(metric, start)
        if band is not None and (a := evaluate(band, value)) is not None:
            out.append(a)
    return tuple(out)


def check(
    expectations: Expectations,
    now: float,
    *,
    last_start: float | None,
    last_change: float | None = None,
    running_since: Iterable[float] = (),
) -> tuple[Alert, ...]:
    """What is late, overdue or stale at ``now``: the periodic check of one pipeline.

    ``last_start``: the latest start (any outcome); ``last_change``: the end of the latest
    successful run that changed data; ``running_since``: starts of runs still running.
    """
    alerts: list[Alert] = []
    if expectations.cadence is not None and last_start is not None:
        if (late := late_start(expectations.cadence, last_start, now)) is not None:
            alerts.append(late)
    for started in running_since:
        band = expectations.band("duration_seconds", started)
        if band is not None and (o := overdue_check(band, started, now)) is not None:
            alerts.append(o)
    if expectations.freshness is not None and last_change is not None:
        if (s := stale(expectations.freshness, last_change, now)) is not None:
            alerts.append(s)
    return tuple(alerts)
