"""Matching alerts to incidents, and the figures.

* **Episodes.** Alerts of one kind on one pipeline whose ``key`` equals the previous one's or
  follows it (the same last start, the same or the next run, the same last change) are one
  *episode*: an ongoing condition counts once, however many checks see it.
* **Detection.** An alert matches an incident of the same pipeline when its kind is one the
  incident's kind accepts (`ACCEPT`: a missed run is detected by a late-start alert (or the staleness it causes), a slow
  run by an overdue or a duration alert, an empty load by a volume or a stale alert, …) and
  it falls within ``[incident time − 1 min, incident window end]`` (the window is 6 h or 4
  periods, whichever is longer; for staleness the stale stretch plus 2 days). An incident is
  detected if any alert matches; time-to-detect is from the incident time to the first
  matching alert.
* **False alerts.** An episode none of whose alerts matches an incident is false. False
  episodes that begin within 4 days after a regime change are also counted separately
  ("at regime changes"): the first alerts after a permanent change are unavoidable — it
  looks exactly like an incident until it lasts — and what matters is that they stop.
* recall = detected / incidents; precision = matched episodes / episodes; false alerts per
  1,000 pipeline-days = false episodes × 1,000 / (pipelines × evaluated days).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from benchmarks.accuracy.generator import DAY, SimPipeline
from benchmarks.accuracy.simulate import CHECK_INTERVAL, SimAlert

ACCEPT: Final[Mapping[str, frozenset[str]]] = {
    "missed": frozenset({"late", "stale"}),
    "late": frozenset({"late"}),
    "stuck": frozenset({"overdue", "stale"}),
    "slow": frozenset({"overdue", "duration"}),
    "empty": frozenset({"volume", "stale"}),
    "spike": frozenset({"volume"}),
    "stale": frozenset({"stale", "volume"}),
}
DETECTORS: Final[tuple[tuple[str, str, tuple[str, ...]], ...]] = (
    ("late/missed start", "late", ("missed", "late")),
    ("stuck/overdue", "overdue", ("stuck",)),
    ("duration anomaly", "duration", ("slow",)),
    ("volume anomaly", "volume", ("empty", "spike")),
    ("stale", "stale", ("stale",)),
)
REGIME_GRACE: Final = 4 * DAY


@dataclass
class Tally:
    """Sums over pipelines for one method."""

    incidents: dict[str, int] = field(default_factory=dict)
    detected: dict[str, int] = field(default_factory=dict)
    ttd: dict[str, list[float]] = field(default_factory=dict)
    episodes: dict[str, int] = field(default_factory=dict)
    false: dict[str, int] = field(default_factory=dict)
    false_at_regime: dict[str, int] = field(default_factory=dict)
    missed_within_target: int = 0
    missed_detected: int = 0

    def add(self, other: Tally) -> None:
        for name in ("incidents", "detected", "episodes", "false", "false_at_regime"):
            mine, theirs = getattr(self, name), getattr(other, name)
            for k, v in theirs.items():
                mine[k] = mine.get(k, 0) + v
        for k, v in other.ttd.items():
            self.ttd.setdefault(k, []).extend(v)
        self.missed_within_target += other.missed_within_target
        self.missed_detected += other.missed_detected


def _episodes(alerts: Iterable[SimAlert]) -> list[list[SimAlert]]:
    out: list[list[SimAlert]] = []
    last: dict[str, tuple[int, list[SimAlert]]] = {}
    for a in sorted(alerts, key=lambda x: x.time):
        prev = last.get(a.kind)
        if prev is not None and a.key in (prev[0], prev[0] + 1):
            prev[1].append(a)
            last[a.kind] = (a.key, prev[1])
        else:
            ep = [a]
            out.append(ep)
            last[a.kind] = (a.key, ep)
    return out


def score(p: SimPipeline, alerts: list[SimAlert]) -> Tally:
    """One pipeline's tally (module doc)."""
    t = Tally()

    def matches(a: SimAlert, kind: str, time: float, until: float) -> bool:
        return a.kind in ACCEPT[kind] and time - 60.0 <= a.time <= until

    for inc in p.incidents:
        t.incidents[inc.kind] = t.incidents.get(inc.kind, 0) + 1
        hits = [a for a in alerts if matches(a, inc.kind, inc.time, inc.window_end)]
        if not hits:
            continue
        first = min(hits, key=lambda a: a.time)
        t.detected[inc.kind] = t.detected.get(inc.kind, 0) + 1
        t.ttd.setdefault(inc.kind, []).append(max(first.time - inc.time, 0.0))
        if inc.kind == "missed" and first.kind == "late" and math.isfinite(first.tolerance):
            t.missed_detected += 1
            if first.time - inc.time <= first.tolerance + CHECK_INTERVAL:
                t.missed_within_target += 1
    for ep in _episodes(alerts):
        kind = ep[0].kind
        t.episodes[kind] = t.episodes.get(kind, 0) + 1
        if any(matches(a, i.kind, i.time, i.window_end) for a in ep for i in p.incidents):
            continue
        t.false[kind] = t.false.get(kind, 0) + 1
        if any(r.time <= ep[0].time <= r.time + REGIME_GRACE for r in p.regimes):
            t.false_at_regime[kind] = t.false_at_regime.get(kind, 0) + 1
    return t


@dataclass(frozen=True)
class Row:
    detector: str
    incidents: int
    recall: float
    episodes: int
    precision: float
    false_per_1k: float
    false_per_1k_noise: float
    ttd_median: float
    ttd_p95: float


def rows(t: Tally, pipeline_days: float) -> list[Row]:
    """Per detector and overall (the last row)."""
    out = []
    specs = [*DETECTORS, ("overall", "*", tuple(ACCEPT))]
    for name, alert_kind, kinds in specs:
        kinds_alerts = [alert_kind] if alert_kind != "*" else [d[1] for d in DETECTORS]
        inc = sum(t.incidents.get(k, 0) for k in kinds)
        det = sum(t.detected.get(k, 0) for k in kinds)
        ttd = [x for k in kinds for x in t.ttd.get(k, [])]
        eps = sum(t.episodes.get(k, 0) for k in kinds_alerts)
        false = sum(t.false.get(k, 0) for k in kinds_alerts)
        at_regime = sum(t.false_at_regime.get(k, 0) for k in kinds_alerts)
        out.append(
            Row(
                detector=name,
                incidents=inc,
                recall=det / inc if inc else math.nan,
                episodes=eps,
                precision=(eps - false) / eps if eps else math.nan,
                false_per_1k=false * 1000.0 / pipeline_days,
                false_per_1k_noise=(false - at_regime) * 1000.0 / pipeline_days,
                ttd_median=float(np.median(ttd)) if ttd else math.nan,
                ttd_p95=float(np.quantile(ttd, 0.95)) if ttd else math.nan,
            )
        )
    return out
