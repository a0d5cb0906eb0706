"""Incident summaries for Slack / Alertmanager."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from watcher.incidents.attachment import step
from watcher.incidents.graph import PipelineGraph
from watcher.incidents.model import IncidentState, Problem, ProblemKind, Resolved
from watcher.incidents.summary import format_duration, name_list, summarize, summarize_resolved

A, B, C, D, E = 1, 2, 3, 4, 5
NAMES = {A: "a", B: "b", C: "c", D: "d", E: "e"}
ADDRESSES = {10 * p: f"s3://lake/{n}" for p, n in NAMES.items()}
GRAPH = PipelineGraph.build([(A, 1000, 10), (B, 10, 20), (C, 20, 30), (D, 30, 40), (E, 40, 50)])


def at(hh: int, mm: int = 0) -> datetime:
    return datetime(2026, 12, 1, hh, mm, tzinfo=UTC)


def test_name_list_counts_and_truncates() -> None:
    assert name_list([], "pipeline") == "0 pipelines"
    assert name_list(["b"], "pipeline") == "1 pipeline (b)"
    assert name_list(["d", "b", "c", "b"], "pipeline") == "3 pipelines (b, c, d)"
    assert name_list("edcba", "dataset") == "5 datasets (a, b, c, +2 more)"


def test_durations() -> None:
    assert format_duration(timedelta(seconds=20)) == "0m"
    assert format_duration(timedelta(hours=1, minutes=10)) == "1h10m"
    assert format_duration(timedelta(days=1, hours=2)) == "1d2h"


def test_firing_and_resolved_summaries() -> None:
    problems = [Problem(A, ProblemKind.FAILED, at(2))] + [
        Problem(x, ProblemKind.STALE, at(2, 30)) for x in (B, C, D, E)
    ]
    state, _ = step(IncidentState(), problems, GRAPH, at(3))
    (incident,) = state.incidents
    assert (
        summarize(incident, NAMES)
        == "a failed at 02:00 UTC — impact: 4 pipelines (b, c, d, +1 more)"
    )
    assert summarize(incident, NAMES, ADDRESSES, GRAPH, max_names=5) == (
        "a failed at 02:00 UTC — impact: 4 pipelines (b, c, d, e), "
        "5 datasets (s3://lake/a, s3://lake/b, s3://lake/c, s3://lake/d, s3://lake/e)"
    )
    _, changes = step(state, problems[1:2] + problems[4:], GRAPH, at(3, 10))
    resolved = changes[-1]
    assert isinstance(resolved, Resolved)
    assert summarize_resolved(resolved, NAMES) == (
        "resolved: a failed at 02:00 UTC — resolved at 03:10 UTC after 1h10m; impacted "
        "4 pipelines (b, c, d, +1 more); still broken: b, e (promoted after 03:25 UTC unless "
        "it recovers)"
    )


def test_several_root_kinds_and_unknown_names() -> None:
    problems = [
        Problem(7, ProblemKind.STALE, at(2, 5)),
        Problem(7, ProblemKind.MISSED, at(2)),
    ]
    state, _ = step(IncidentState(), problems, GRAPH, at(3))
    assert summarize(state.incidents[0], NAMES) == (
        "#7 missed a scheduled run and is stale at 02:00 UTC — impact: 0 pipelines"
    )
