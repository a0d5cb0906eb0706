"""Learned expectations: monitoring with zero rules.

Watcher learns, per pipeline and from its own recent runs, when it starts, how long it takes,
how many rows it moves and how often its targets change, and says what is late, missing,
stale or unusual. Everything here is pure — functions of arrays and an explicit ``now``
(epoch seconds, UTC), no I/O, no clock, no database — so the caller decides where data
comes from and where results go.

Typical wiring (one pipeline)::

    history = History.of(starts, end=ends, success=ok, duration_seconds=d, total_rows=r,
                         inserts=i, updates=u, soft_deletes=s, flags=flags,
                         excluded=excluded, fine=fine)          # last 35 d / 2,000 runs
    exp = learn(history, now, LearnSettings(sensitivity="medium"))   # e.g. hourly
    store(exp.to_json())                                        # JSONB column
    exp = Expectations.from_json(row)
    for a in check(exp, now, last_start=..., last_change=..., running_since=[...]):
        alert(a.text)                                           # LateStart | Overdue | Stale
    for a in evaluate_run(exp, run_start, {"duration_seconds": 812.0, "total_rows": 0.0}):
        flag(run, FLAG_BITS[a.metric]); alert(a.text)           # Anomaly

Feed flags back: set ``FLAG_BITS["start"]`` on a run that started after a late-start alert,
the metric's bit on a run with an `Anomaly`, ``FLAG_BITS["stale"]`` on the change that ended
a stale episode; the user's "exclude from training" and "this is fine" go to ``excluded`` /
``fine``. Maintenance windows, "retrain from" and the sensitivity are `LearnSettings`.

Modules: `history` (input), `cadence` (schedule, late start), `bands` (metric bands,
anomalies, overdue runs), `freshness` (stale targets), `training` (training rules,
minimum history, sensitivity, regime changes), `learn` (the combination). Each documents its
algorithm. Defaults: window D = 35 days and W = 2,000 runs; medium sensitivity; K = 3 runs
for a regime change; schedule after 8 runs over ≥ 7 days; bands after 10 runs. All in UTC.
"""

from watcher.expectations.bands import (
    Anomaly,
    Band,
    MetricModel,
    Overdue,
    evaluate,
    learn_band,
    overdue,
)
from watcher.expectations.cadence import Cadence, LateStart, infer_cadence, late_start
from watcher.expectations.freshness import FreshnessExpectation, Stale, learn_freshness, stale
from watcher.expectations.history import (
    DEFAULT_MAX_RUNS,
    DEFAULT_WINDOW_DAYS,
    FLAG_BITS,
    METRICS,
    VOLUME_METRICS,
    History,
)
from watcher.expectations.learn import (
    Alert,
    Expectations,
    RegimeChange,
    check,
    evaluate_run,
    learn,
)
from watcher.expectations.training import SENSITIVITY, LearnSettings, Sensitivity

__all__ = [
    "DEFAULT_MAX_RUNS",
    "DEFAULT_WINDOW_DAYS",
    "FLAG_BITS",
    "METRICS",
    "SENSITIVITY",
    "VOLUME_METRICS",
    "Alert",
    "Anomaly",
    "Band",
    "Cadence",
    "Expectations",
    "FreshnessExpectation",
    "History",
    "LateStart",
    "LearnSettings",
    "MetricModel",
    "Overdue",
    "RegimeChange",
    "Sensitivity",
    "Stale",
    "check",
    "evaluate",
    "evaluate_run",
    "infer_cadence",
    "late_start",
    "learn",
    "learn_band",
    "learn_freshness",
    "overdue",
    "stale",
]
