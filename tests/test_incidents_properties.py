"""Properties of `step` over random graphs and random sequences of active problems."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from watcher.incidents.attachment import step
from watcher.incidents.graph import PipelineGraph
from watcher.incidents.model import (
    Attached,
    IncidentState,
    Opened,
    Problem,
    ProblemKey,
    ProblemKind,
    Promoted,
    Resolved,
)

T0 = datetime(2026, 12, 1, 2, tzinfo=UTC)
PIPELINES = st.integers(1, 6)
GRAPHS = st.builds(
    PipelineGraph.build,
    st.frozensets(st.tuples(PIPELINES, st.integers(1, 6), st.integers(1, 6)), max_size=12),
    st.frozensets(st.tuples(PIPELINES, PIPELINES), max_size=3),
)
KEYS = st.tuples(PIPELINES, st.sampled_from(list(ProblemKind)))
# One step: which problems are active (with their start offset in minutes) and the clock advance.
STEPS = st.lists(
    st.tuples(st.dictionaries(KEYS, st.integers(0, 20), max_size=8), st.integers(0, 20)),
    min_size=1,
    max_size=8,
)


def _problems(active: dict[ProblemKey, int], now: datetime) -> list[Problem]:
    return [
        Problem(pipeline, kind, now - timedelta(minutes=age), f"{pipeline}/{kind}")
        for (pipeline, kind), age in active.items()
    ]


def _check_invariants(
    state: IncidentState, problems: list[Problem], graph: PipelineGraph, now: datetime
) -> None:
    placed = Counter(r.key for incident in state.incidents for r in incident.active) + Counter(
        item.key for item in state.pending
    )
    # Every active problem is in exactly one place: a root or an impact of exactly one open
    # incident, or pending (an orphan of a resolved incident within its grace).
    assert placed == Counter({x.key for x in problems})
    assert all(item.due_at > now for item in state.pending)
    ids = [i.id for i in state.incidents]
    assert ids == sorted(set(ids))
    assert all(i < state.next_id for i in ids)
    roots = [i.root_pipeline_id for i in state.incidents]
    assert len(roots) == len(set(roots))  # at most one open incident per root pipeline
    for incident in state.incidents:
        assert incident.is_open and incident.root_kinds
        for record in incident.active:
            if record.depth == 0:
                assert record.pipeline_id == incident.root_pipeline_id
            else:
                ups = graph.upstream(record.pipeline_id)
                assert incident.root_pipeline_id in ups
                assert record.started_at >= incident.started_at


@settings(max_examples=80, deadline=None, database=None)
@given(GRAPHS, STEPS, st.sampled_from([0, 5, 15]), st.randoms(use_true_random=False))
def test_every_problem_has_exactly_one_place_and_steps_are_idempotent(
    graph: PipelineGraph,
    steps: list[tuple[dict[ProblemKey, int], int]],
    grace_minutes: int,
    rnd: random.Random,
) -> None:
    grace = timedelta(minutes=grace_minutes)
    state, now = IncidentState(), T0
    seen_ids: set[int] = set()
    for active, advance in steps:
        now += timedelta(minutes=advance)
        problems = _problems(active, now)
        state, changes = step(state, problems, graph, now, grace)
        _check_invariants(state, problems, graph, now)

        # Idempotent: the same inputs again change nothing.
        assert step(state, problems, graph, now, grace) == (state, [])
        # Deterministic: the order of the problems does not matter.
        shuffled = list(problems)
        rnd.shuffle(shuffled)
        state_again, _ = step(state, shuffled, graph, now, grace)
        assert state_again == state

        for change in changes:
            if isinstance(change, Opened | Promoted):
                assert change.incident.id not in seen_ids  # ids are never reused
                seen_ids.add(change.incident.id)
            if isinstance(change, Resolved):
                assert change.incident.resolved_at == now
                assert state.incident(change.incident.id) is None


@settings(max_examples=40, deadline=None, database=None)
@given(GRAPHS, st.dictionaries(KEYS, st.integers(0, 20), min_size=1, max_size=8))
def test_one_step_equals_arrival_in_start_order(
    graph: PipelineGraph, active: dict[ProblemKey, int]
) -> None:
    """Seeing everything at once groups like seeing problems arrive one by one, oldest first.

    (Only when starts are distinct: with equal starts a single step prefers the upstream root.)
    """
    now = T0 + timedelta(minutes=30)
    problems = sorted(_problems(active, now), key=lambda x: (x.started_at, x.key))
    if len({x.started_at for x in problems}) < len(problems):
        return
    together, _ = step(IncidentState(), problems, graph, now)
    state = IncidentState()
    for count in range(1, len(problems) + 1):
        state, _ = step(state, problems[:count], graph, now)

    def grouping(s: IncidentState) -> set[tuple[int, frozenset[ProblemKey]]]:
        return {(i.root_pipeline_id, frozenset(r.key for r in i.active)) for i in s.incidents}

    assert grouping(together) == grouping(state)


@settings(max_examples=40, deadline=None, database=None)
@given(GRAPHS, st.dictionaries(KEYS, st.integers(0, 20), min_size=1, max_size=8))
def test_an_upstream_open_incident_suppresses_creation(
    graph: PipelineGraph, active: dict[ProblemKey, int]
) -> None:
    """No opened incident has an eligible open incident upstream of its root."""
    now = T0 + timedelta(minutes=30)
    state, changes = step(IncidentState(), _problems(active, now), graph, now)
    for change in changes:
        if isinstance(change, Attached):
            continue
        if isinstance(change, Opened):
            root = change.incident
            ups = graph.upstream(root.root_pipeline_id)
            for other in state.incidents:
                if other.id < root.id and other.root_pipeline_id in ups:
                    assert other.started_at > root.started_at
