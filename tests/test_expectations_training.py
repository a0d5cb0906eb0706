"""Training rules, regime changes, freshness and JSON (watcher.expectations)."""

from __future__ import annotations

import json

import numpy as np

from watcher.expectations import (
    FLAG_BITS,
    Expectations,
    FreshnessExpectation,
    History,
    LearnSettings,
    check,
    evaluate_run,
    learn,
    learn_freshness,
    stale,
)
from watcher.expectations.training import base_mask

T0 = 1_767_571_200.0  # Monday 00:00 UTC
DAY = 86400.0


def _hourly(days: int = 21, seed: int = 0, rows: float = 10_000.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = 24 * days
    start = T0 + 300 + np.arange(n) * 3600.0 + rng.exponential(20, n)
    duration = 600 * rng.lognormal(0, 0.1, n)
    total = np.round(rows * rng.lognormal(0, 0.1, n))
    return {
        "start": start,
        "end": start + duration,
        "total_rows": total,
        "inserts": total,
        "updates": np.zeros(n),
        "soft_deletes": np.zeros(n),
    }


def _history(cols: dict[str, np.ndarray], **extra: np.ndarray) -> History:
    c = dict(cols)
    start = c.pop("start")
    return History.of(start, **c, **extra)


def _now(cols: dict[str, np.ndarray]) -> float:
    return float(cols["end"][-1]) + 60


def test_minimum_history() -> None:
    cols = _hourly(days=2)
    e = learn(_history({k: v[:5] for k, v in cols.items()}), float(cols["end"][4]) + 1)
    assert e.cadence is None and e.bands == () and e.freshness is None
    assert any("schedule" in n for n in e.notes)
    e = learn(_history(cols), _now(cols))
    assert e.cadence is None  # 2 days: no schedule before a full week
    assert e.band("total_rows", _now(cols)) is not None  # 48 runs ≥ 10: bands exist
    full = _hourly(days=8)
    assert learn(_history(full), _now(full)).cadence is not None


def test_flagged_runs_are_excluded_unless_fine() -> None:
    cols = _hourly()
    n = cols["start"].shape[0]
    bad = np.zeros(n, dtype=bool)
    bad[-200:-3:2] = True  # every other recent run doubled, and flagged
    cols["total_rows"] = np.where(bad, cols["total_rows"] * 3, cols["total_rows"])
    flags = np.where(bad, FLAG_BITS["total_rows"], 0)
    now = _now(cols)
    clean = learn(_history(cols, flags=flags), now).band("total_rows", now)
    assert clean is not None and 9_000 < clean.center < 11_000
    fine = learn(_history(cols, flags=flags, fine=bad), now).band("total_rows", now)
    assert fine is not None and fine.high > clean.high
    excluded = learn(_history(cols, excluded=bad), now).band("total_rows", now)
    assert excluded is not None and 9_000 < excluded.center < 11_000


def test_maintenance_windows_and_retrain_from() -> None:
    cols = _hourly()
    cols["duration_seconds"] = cols["end"] - cols["start"]
    window = (T0 + 10 * DAY, T0 + 11 * DAY)
    inside = (cols["start"] >= window[0]) & (cols["start"] < window[1])
    cols["end"] = np.where(inside, cols["end"] + 5 * 3600, cols["end"])
    cols.pop("duration_seconds")
    now = _now(cols)
    plain = learn(_history(cols), now).band("duration_seconds", now)
    kept = learn(_history(cols), now, LearnSettings(maintenance_windows=(window,)))
    kept_band = kept.band("duration_seconds", now)
    assert plain is not None and kept_band is not None
    assert kept_band.n == plain.n - int(inside[-24 * 14 :].sum())  # the 24 runs are left out
    h = _history(cols)
    assert not base_mask(h, now, LearnSettings(maintenance_windows=(window,)))[inside].any()
    retrained = learn(_history(cols), now, LearnSettings(retrain_from=now - 3 * DAY))
    assert retrained.cadence is None  # 3 days since "retrain from": not enough yet
    assert retrained.model("total_rows") is not None
    assert retrained.model("total_rows").n <= 72  # type: ignore[union-attr]


def test_sensitivity_widens_and_narrows() -> None:
    cols = _hourly()
    now = _now(cols)
    widths = []
    for level in ("high", "medium", "low"):
        e = learn(_history(cols), now, LearnSettings(sensitivity=level))
        b = e.band("total_rows", now)
        assert b is not None and e.cadence is not None
        widths.append((b.high - b.low, e.cadence.tolerance_seconds))
    assert widths[0][0] < widths[1][0] < widths[2][0]
    assert widths[0][1] <= widths[1][1] <= widths[2][1]


def test_volume_regime_change_is_adopted() -> None:
    cols = _hourly(days=21)
    n = cols["start"].shape[0]
    doubled = np.arange(n) >= n - 12
    cols["total_rows"] = np.where(doubled, cols["total_rows"] * 4, cols["total_rows"])
    flags = np.where(doubled, FLAG_BITS["total_rows"], 0)  # each alerted when it came
    now = _now(cols)
    e = learn(_history(cols, flags=flags), now)
    band = e.band("total_rows", now)
    assert band is not None and band.low < 40_000 < band.high
    assert any(r.aspect == "total_rows" for r in e.regime_changes)
    assert not evaluate_run(e, now, {"total_rows": 41_000.0})


def test_zero_rows_are_never_a_new_normal() -> None:
    cols = _hourly(days=21)
    n = cols["start"].shape[0]
    empty = np.arange(n) >= n - 12
    cols["total_rows"] = np.where(empty, 0.0, cols["total_rows"])
    e = learn(_history(cols, flags=np.where(empty, FLAG_BITS["total_rows"], 0)), _now(cols))
    assert not any(r.aspect == "total_rows" for r in e.regime_changes)
    assert evaluate_run(e, _now(cols), {"total_rows": 0.0})


def test_a_single_spike_is_not_a_regime_change() -> None:
    cols = _hourly(days=21)
    cols["total_rows"][-2] *= 50
    e = learn(_history(cols), _now(cols))
    assert e.regime_changes == ()


def test_schedule_change_relearns() -> None:
    cols = _hourly(days=21)
    last = float(cols["start"][-1])
    daily = last + 3600 * 7 + np.arange(1, 4) * DAY
    cols = {k: np.concatenate([v, v[-3:]]) for k, v in cols.items()}
    cols["start"][-3:] = daily
    cols["end"][-3:] = daily + 600
    now = float(daily[-1]) + 700
    e = learn(_history(cols), now)
    assert any(r.aspect == "schedule" for r in e.regime_changes)
    assert e.cadence is None  # relearning: three daily runs are not enough yet
    assert not [a for a in check(e, now + 3 * 3600, last_start=float(daily[-1]))]
    two = {k: v[:-1] for k, v in cols.items()}
    e2 = learn(_history(two), float(daily[-2]) + 700)
    assert e2.cadence is not None and e2.cadence.period_seconds == 3600  # 2 runs: not yet


def test_freshness_learn_and_stale() -> None:
    changes: np.ndarray = T0 + np.arange(20) * 3600.0
    f = learn_freshness(changes, factor=1.5)
    assert f is not None and f.max_gap_seconds == 2 * 3600  # 2 × the median gap
    assert stale(f, float(changes[-1]), float(changes[-1]) + 7000) is None
    s = stale(f, float(changes[-1]), float(changes[-1]) + 3 * 3600)
    assert s is not None and "last change 3.0 h ago" in s.text
    weekdays = np.array([T0 + d * DAY for d in range(28) if d % 7 < 5])
    fw = learn_freshness(weekdays, factor=1.5)
    assert fw is not None and fw.max_gap_seconds == 6 * DAY  # the weekend + 1.5 × 2 d
    assert learn_freshness(changes[:5]) is None
    gaps_excluded = np.zeros(19, dtype=bool)
    longer = changes.copy()
    longer[10:] += 10 * 3600  # one 11 h gap, the end of a stale episode
    gaps_excluded[9] = True
    fe = learn_freshness(longer, factor=1.5, excluded_gaps=gaps_excluded)
    assert fe is not None and fe.max_gap_seconds == 2 * 3600


def test_learned_freshness_and_stale_check() -> None:
    cols = _hourly(days=14)
    now = _now(cols)
    e = learn(_history(cols), now)
    assert e.freshness is not None
    last = float(cols["end"][-1])
    assert not [a for a in check(e, last + 600, last_start=None, last_change=last)]
    alerts = check(e, last + 12 * 3600, last_start=None, last_change=last)
    assert any("data usually changes" in a.text for a in alerts)


def test_json_round_trip() -> None:
    cols = _hourly(days=14)
    now = _now(cols)
    e = learn(_history(cols), now)
    text = json.dumps(e.to_json())
    back = Expectations.from_json(text)
    assert back == e
    assert Expectations.from_json(json.loads(text)) == e
    empty = learn(History.of([]), now)
    assert Expectations.from_json(json.dumps(empty.to_json())) == empty
    fresh = FreshnessExpectation(10.0, 5.0, 3)
    assert FreshnessExpectation.from_json(fresh.to_json()) == fresh


def test_check_reports_late_and_overdue() -> None:
    cols = _hourly(days=14)
    now = _now(cols)
    e = learn(_history(cols), now)
    last = float(cols["start"][-1])
    alerts = check(e, last + 2 * 3600, last_start=last, running_since=[last + 3600 - 4000])
    texts = [a.text for a in alerts]
    assert any("every hour" in t and "nothing since" in t for t in texts)
    assert any(t.startswith("running for") for t in texts)
