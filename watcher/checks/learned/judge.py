"""What the learned check finds for one pipeline: pure, from rows and one `now`.

Priority (docs/checks.md): a configured rule of the same kind — the pipeline's own or its
type's — wins over the learned expectation, and a mute wins over both:

* late start: skipped when a cron `schedule` applies (missed runs); muted with timeliness;
* overdue run: skipped when a timeliness rule applies or timeliness is muted;
* stale: skipped when a freshness rule applies or freshness is muted;
* anomaly of a metric: skipped when the pipeline has an active anomaly rule for that metric.

A declared maintenance window (`windows`, watcher/expectations/maintenance.py) silences all
four while it lasts; afterwards late starts, overdue runs and staleness count from its end,
and a run that overlapped it is never anomalous.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from watcher.checks.rules import RULE_COLUMNS, resolve, resolve_schedule, split_row
from watcher.expectations import METRICS as _METRICS
from watcher.expectations import Expectations, evaluate_run, late_start, overdue, stale
from watcher.expectations.maintenance import Window, active, overlaps, resume_from

RULE_SOURCE = "learned"


@dataclass(frozen=True, slots=True)
class LearnedFinding:
    """One broken learned expectation. `subject` identifies it (logged once): the late slot's
    due time, the run's start (overdue, anomaly) or the last change (stale)."""

    pipeline_id: int
    pipeline_name: str
    kind: str
    metric: str
    subject: datetime
    pipeline_execution_id: int | None
    expected: dict[str, Any]
    message: str
    rule_source: str = RULE_SOURCE


@dataclass(frozen=True, slots=True)
class LoggedLearnedFinding(LearnedFinding):
    """A learned finding as the checks report it (`newly_logged`: logged by this run)."""

    newly_logged: bool = False


def at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _finding(
    row: Mapping[str, Any],
    kind: str,
    subject: float | datetime,
    message: str,
    expected: dict[str, Any],
    *,
    metric: str = "",
    execution: int | None = None,
) -> LearnedFinding:
    return LearnedFinding(
        pipeline_id=int(row["id"]),
        pipeline_name=str(row["name"]),
        kind=kind,
        metric=metric,
        subject=subject if isinstance(subject, datetime) else at(subject),
        pipeline_execution_id=execution,
        expected=expected,
        message=message,
    )


def judge(
    row: Mapping[str, Any],
    exp: Expectations,
    now: datetime,
    *,
    running: Iterable[Mapping[str, Any]] = (),
    finished: Iterable[Mapping[str, Any]] = (),
    configured_metrics: frozenset[str] = frozenset(),
    windows: tuple[Window, ...] = (),
) -> list[LearnedFinding]:
    """Findings of one pipeline row (with rule columns, `last_start`, `last_change`).

    `running`: its executions still running (id, start_date); `finished`: its successful
    executions that ended recently (id, start_date, end_date and the metric columns);
    `windows`: the maintenance windows that apply to it (epoch seconds)."""
    child, parent = split_row({k: v for k, v in row.items() if k in _RULE_KEYS})
    t = now.timestamp()
    out: list[LearnedFinding] = []
    if active(windows, t):
        return out
    cadence = exp.cadence
    muted_timeliness = bool(
        child.get("mute_timeliness_check") or parent.get("mute_timeliness_check")
    )
    if cadence is not None and row["last_start"] is not None and not muted_timeliness:
        if resolve_schedule(child, parent) is None:
            since = resume_from(windows, row["last_start"].timestamp(), t)
            late = None if since is None else late_start(cadence, since, t)
            if late is not None:
                expected = cadence.to_json() | {
                    "due": at(late.due).isoformat(),
                    "deadline": at(late.deadline).isoformat(),
                    "describe": cadence.describe(),
                    "missed_slots": late.missed_slots,
                }
                out.append(_finding(row, "late_start", late.due, late.text, expected))
    if resolve("timeliness", child, parent) is None and not muted_timeliness:
        for run in running:
            started: datetime = run["start_date"]
            band = exp.band("duration_seconds", started.timestamp())
            since = resume_from(windows, started.timestamp(), t)
            if band is None or since is None:
                continue
            if (o := overdue(band, since, t)) is not None:
                expected = band.to_json() | {"limit_seconds": o.limit_seconds}
                out.append(_finding(row, "overdue", started, o.text, expected, execution=run["id"]))
    fresh = exp.freshness
    if fresh is not None and row["last_change"] is not None:
        muted = child.get("mute_freshness_check") or parent.get("mute_freshness_check")
        if not muted and resolve("freshness", child, parent) is None:
            since = resume_from(windows, row["last_change"].timestamp(), t)
            s = None if since is None else stale(fresh, since, t)
            if s is not None:
                expected = fresh.to_json() | {"deadline": at(s.deadline).isoformat()}
                out.append(_finding(row, "stale", row["last_change"], s.text, expected))
    for run in finished:
        end: datetime | None = run.get("end_date")
        ended = None if end is None else end.timestamp()
        if overlaps(windows, run["start_date"].timestamp(), ended):
            continue
        values = {
            m: float(run[m])
            for m in _METRICS
            if run.get(m) is not None and m not in configured_metrics
        }
        for a in evaluate_run(exp, run["start_date"].timestamp(), values):
            expected = a.band.to_json() | {"value": a.value, "direction": a.direction}
            out.append(
                _finding(
                    row,
                    "anomaly",
                    run["start_date"],
                    a.text,
                    expected,
                    metric=a.metric,
                    execution=run["id"],
                )
            )
    return out


_RULE_KEYS = frozenset([*RULE_COLUMNS, *(f"type_{c}" for c in RULE_COLUMNS)])
