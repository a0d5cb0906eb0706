"""Incident decisions: one incident per root cause, impact, resolution, promotion."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from watcher.incidents.attachment import acknowledge, step
from watcher.incidents.graph import PipelineGraph
from watcher.incidents.model import (
    DEFAULT_GRACE,
    Attached,
    Change,
    Detached,
    DetachReason,
    Incident,
    IncidentState,
    Opened,
    Problem,
    ProblemKind,
    Promoted,
    Resolved,
)

A, B, C, D, E, F = 1, 2, 3, 4, 5, 6
FAILED, STALE, MISSED, OVERDUE = (
    ProblemKind.FAILED,
    ProblemKind.STALE,
    ProblemKind.MISSED,
    ProblemKind.OVERDUE,
)


def at(hh: int, mm: int = 0) -> datetime:
    return datetime(2026, 12, 1, hh, mm, tzinfo=UTC)


def flows(*pairs: tuple[int, int], isolated: Sequence[int] = ()) -> PipelineGraph:
    """Pipeline p writes address 10·p and reads an external 1000+p plus its upstreams' outputs."""
    sources: dict[int, set[int]] = {p: set() for p in isolated}
    for up, down in pairs:
        sources.setdefault(up, set())
        sources.setdefault(down, set()).add(10 * up)
    return PipelineGraph.build(
        (p, s, 10 * p) for p, srcs in sources.items() for s in sorted(srcs | {1000 + p})
    )


def p(pipeline: int, kind: ProblemKind, start: datetime, detail: str = "") -> Problem:
    return Problem(pipeline, kind, start, detail)


class Run:
    """Drives `step` through time, checking idempotence at every step."""

    def __init__(self, graph: PipelineGraph, grace: timedelta = DEFAULT_GRACE) -> None:
        self.graph = graph
        self.grace = grace
        self.state = IncidentState()

    def __call__(self, now: datetime, *problems: Problem) -> list[Change]:
        self.state, changes = step(self.state, problems, self.graph, now, self.grace)
        again, none = step(self.state, problems, self.graph, now, self.grace)
        assert (again, none) == (self.state, [])
        return changes

    def only(self) -> Incident:
        (incident,) = self.state.incidents
        return incident

    def rooted_at(self, pipeline: int) -> Incident:
        (incident,) = [i for i in self.state.incidents if i.root_pipeline_id == pipeline]
        return incident


def kinds_of(changes: Sequence[Change]) -> list[str]:
    return [c.kind for c in changes]


CHAIN = flows((A, B), (B, C), (C, D), isolated=[E])


def test_chain_one_incident_then_resolution_then_promotion_after_grace() -> None:
    run = Run(CHAIN)
    a_failed = p(A, FAILED, at(2), "exit 1")
    (opened,) = run(at(2, 1), a_failed)
    assert isinstance(opened, Opened)
    assert opened.incident.root_pipeline_id == A
    assert opened.incident.started_at == at(2)
    assert opened.problems == (a_failed,)
    first = opened.incident.id

    b, c, d = p(B, STALE, at(2, 30)), p(C, STALE, at(2, 40)), p(D, STALE, at(2, 50))
    e = p(E, FAILED, at(2, 45))
    changes = run(at(3), a_failed, b, c, d, e)
    assert [(type(x).__name__, getattr(x, "depth", None)) for x in changes] == [
        ("Attached", 1),
        ("Attached", 2),
        ("Attached", 3),
        ("Opened", None),
    ]
    incident = run.rooted_at(A)
    assert incident.root_kinds == {FAILED}
    assert {k: (v.depth, set(v.kinds), v.since) for k, v in incident.impacted.items()} == {
        B: (1, {STALE}, at(2, 30)),
        C: (2, {STALE}, at(2, 40)),
        D: (3, {STALE}, at(2, 50)),
    }
    assert run.rooted_at(E).id != first

    # A recovers: resolved at once (never delayed), B, C, D detached and pending.
    changes = run(at(3, 10), b, c, d, e)
    assert kinds_of(changes) == ["detached"] * 4 + ["resolved"]
    resolved = changes[-1]
    assert isinstance(resolved, Resolved)
    assert resolved.incident.resolved_at == at(3, 10)
    assert resolved.incident.active == ()
    assert resolved.orphans == ((B, STALE), (C, STALE), (D, STALE))
    assert resolved.promote_after == at(3, 10) + DEFAULT_GRACE
    assert {r.reason for r in resolved.incident.history} == {
        DetachReason.CLEARED,
        DetachReason.ROOT_RESOLVED,
    }
    assert [i.root_pipeline_id for i in run.state.incidents] == [E]
    assert [x.pipeline_id for x in run.state.pending] == [B, C, D]

    # B and C catch up within the grace; D does not. Nothing is promoted before the grace.
    assert run(at(3, 15), d, e) == []
    assert [x.pipeline_id for x in run.state.pending] == [D]
    assert run(at(3, 24), d, e) == []
    (promoted,) = run(at(3, 25), d, e)
    assert isinstance(promoted, Promoted)
    assert promoted.from_incident_id == first
    assert promoted.incident.root_pipeline_id == D
    assert promoted.incident.started_at == at(2, 50)  # the original problem's start
    assert promoted.incident.opened_at == at(3, 25)
    assert run.state.pending == ()


def test_orphan_that_recovers_within_grace_is_never_promoted() -> None:
    run = Run(CHAIN)
    a, d = p(A, FAILED, at(2)), p(D, STALE, at(2, 30))
    run(at(3), a, d)
    run(at(3, 5), d)
    assert run(at(3, 19), d) == []
    assert run(at(3, 20)) == []  # D fresh again: forgotten silently
    assert run.state == IncidentState(next_id=2)
    assert run(at(4)) == []


def test_promoted_orphans_keep_their_subtree_together() -> None:
    run = Run(CHAIN, grace=timedelta(0))
    a, c, d = p(A, FAILED, at(2)), p(C, STALE, at(2, 30)), p(D, STALE, at(2, 40))
    run(at(3), a, c, d)
    changes = run(at(3, 5), c, d)  # zero grace: promoted in the same step
    assert kinds_of(changes) == ["detached"] * 3 + ["resolved", "promoted", "attached"]
    incident = run.only()
    assert incident.root_pipeline_id == C
    assert incident.started_at == at(2, 30)
    assert incident.impacted[D].depth == 1


def test_impacted_problem_that_clears_leaves_active_impact_but_stays_in_history() -> None:
    run = Run(CHAIN)
    a, b, c = p(A, FAILED, at(2)), p(B, STALE, at(2, 10)), p(C, STALE, at(2, 20))
    run(at(2, 30), a, b, c)
    (detached,) = run(at(2, 40), a, c)
    assert detached == Detached(run.only().id, B, STALE, 1, DetachReason.CLEARED)
    incident = run.only()
    assert set(incident.impacted) == {C}
    (record,) = incident.history
    assert (record.pipeline_id, record.detached_at, record.reason) == (
        B,
        at(2, 40),
        DetachReason.CLEARED,
    )
    assert incident.ever_impacted == {B, C}


def test_more_root_problems_join_and_all_must_clear() -> None:
    run = Run(CHAIN)
    failed, overdue = p(A, FAILED, at(2)), p(A, OVERDUE, at(1, 50))
    run(at(2, 5), failed)
    (joined,) = run(at(2, 10), failed, overdue)  # an earlier-started root problem joins too
    assert joined == Attached(run.only().id, overdue, 0)
    assert run.only().root_kinds == {FAILED, OVERDUE}
    assert run.only().started_at == at(2)  # the incident's start does not move
    assert kinds_of(run(at(2, 20), overdue)) == ["detached"]
    assert kinds_of(run(at(2, 30))) == ["detached", "resolved"]


def test_one_step_sees_root_and_impact_together() -> None:
    run = Run(CHAIN)
    changes = run(at(3), p(D, STALE, at(2, 50)), p(B, STALE, at(2, 30)), p(A, FAILED, at(2)))
    assert kinds_of(changes) == ["opened", "attached", "attached"]
    assert run.only().root_pipeline_id == A
    assert set(run.only().impacted) == {B, D}


def test_problem_that_started_before_the_upstream_incident_is_not_attached() -> None:
    run = Run(CHAIN)
    run(at(2), p(A, FAILED, at(2)))
    changes = run(at(2, 5), p(A, FAILED, at(2)), p(C, STALE, at(1, 30)))
    assert kinds_of(changes) == ["opened"]
    assert {i.root_pipeline_id for i in run.state.incidents} == {A, C}


def test_equal_start_attaches() -> None:
    run = Run(CHAIN)
    run(at(2), p(A, FAILED, at(2)), p(B, FAILED, at(2)))
    assert run.only().root_pipeline_id == A
    assert run.only().impacted[B].depth == 1


def test_grandparent_covers_grandchild_through_a_healthy_intermediate() -> None:
    run = Run(CHAIN)
    run(at(3), p(A, FAILED, at(2)), p(C, STALE, at(2, 30)))  # B reports nothing
    assert run.only().impacted[C].depth == 2


def test_diamond_counts_the_bottom_once_at_depth_two() -> None:
    run = Run(flows((A, B), (A, C), (B, D), (C, D)))
    problems = [p(A, FAILED, at(2)), *(p(x, STALE, at(2, 30)) for x in (B, C, D))]
    changes = run(at(3), *problems)
    assert kinds_of(changes) == ["opened", "attached", "attached", "attached"]
    assert {k: v.depth for k, v in run.only().impacted.items()} == {B: 1, C: 1, D: 2}


@pytest.mark.parametrize(
    ("a_start", "b_start", "root", "other"),
    [(at(2), at(2, 5), A, B), (at(2, 5), at(2), B, A), (at(2), at(2), A, B)],
)
def test_cycle_earliest_start_is_the_root(
    a_start: datetime, b_start: datetime, root: int, other: int
) -> None:
    run = Run(flows((A, B), (B, A)))
    run(at(3), p(A, FAILED, a_start), p(B, FAILED, b_start))
    assert run.only().root_pipeline_id == root
    assert run.only().impacted[other].depth == 1


def test_two_roots_upstream_attach_to_the_earliest_and_record_the_other() -> None:
    #   A ─┐
    #      ├─> C
    #   B ─┘
    run = Run(flows((A, C), (B, C)))
    run(at(2, 10), p(A, FAILED, at(2, 10)), p(B, FAILED, at(2)))
    (attached,) = run(
        at(2, 30), p(A, FAILED, at(2, 10)), p(B, FAILED, at(2)), p(C, STALE, at(2, 20))
    )
    assert isinstance(attached, Attached)
    b_incident, a_incident = run.rooted_at(B), run.rooted_at(A)
    assert attached.incident_id == b_incident.id
    assert attached.also_upstream == (a_incident.id,)
    assert b_incident.impacted[C].also_upstream == {a_incident.id}


def test_two_roots_with_equal_starts_tie_break_on_incident_id() -> None:
    run = Run(flows((A, C), (B, C)))
    run(at(2), p(B, FAILED, at(2)))
    run(at(2, 1), p(B, FAILED, at(2)), p(A, FAILED, at(2)))
    run(at(2, 2), p(B, FAILED, at(2)), p(A, FAILED, at(2)), p(C, STALE, at(2, 1)))
    assert C in run.rooted_at(B).impacted  # B's incident was opened first: lower id


def test_only_the_eligible_root_hosts_when_the_other_started_later() -> None:
    run = Run(flows((A, C), (B, C)))
    run(at(2), p(A, FAILED, at(2)), p(B, FAILED, at(2, 40)), p(C, STALE, at(2, 30)))
    assert run.rooted_at(A).impacted[C].also_upstream == frozenset()
    assert run.rooted_at(B).impacted == {}


def test_independent_problems_are_separate_incidents() -> None:
    run = Run(flows((A, B), (C, D)))
    changes = run(at(3), p(A, FAILED, at(2)), p(D, STALE, at(2, 30)))
    assert kinds_of(changes) == ["opened", "opened"]


def test_new_upstream_problem_opens_its_own_incident_without_re_rooting() -> None:
    run = Run(CHAIN)
    run(at(2), p(B, FAILED, at(2)))
    b_id = run.only().id
    changes = run(at(2, 30), p(B, FAILED, at(2)), p(A, FAILED, at(1, 55)))
    assert kinds_of(changes) == ["opened"]
    a_incident = run.rooted_at(A)
    assert a_incident.impacted == {}
    # B's later problems stay with B's own incident; C goes to the earliest eligible (B's).
    changes = run(
        at(2, 40),
        p(B, FAILED, at(2)),
        p(A, FAILED, at(1, 55)),
        p(B, STALE, at(2, 35)),
        p(C, STALE, at(2, 36)),
    )
    assert [(c.incident_id, c.depth) for c in changes if isinstance(c, Attached)] == [
        (b_id, 0),
        (a_incident.id, 2),
    ]


def test_nesting_parent_incident_covers_the_child() -> None:
    graph = PipelineGraph.build([(B, 1, 2)], nesting=[(A, B)])
    run = Run(graph)
    run(at(2), p(A, FAILED, at(2)), p(B, OVERDUE, at(2, 5)))
    assert run.only().root_pipeline_id == A
    assert run.only().impacted[B].depth == 1


def test_orphan_reattaches_at_once_to_another_open_upstream_incident() -> None:
    run = Run(flows((A, C), (B, C)))
    a, b, c = p(A, FAILED, at(2)), p(B, FAILED, at(2, 10)), p(C, STALE, at(2, 20))
    run(at(2, 30), a, b, c)
    assert C in run.rooted_at(A).impacted
    changes = run(at(2, 40), b, c)
    assert kinds_of(changes) == ["detached", "detached", "resolved", "attached"]
    assert run.only().root_pipeline_id == B
    assert run.only().impacted[C].since == at(2, 20)
    assert run.state.pending == ()


def test_lineage_change_unlinks_and_replaces_the_impact() -> None:
    run = Run(CHAIN)
    a, c = p(A, FAILED, at(2)), p(C, STALE, at(2, 30))
    run(at(3), a, c)
    run.graph = run.graph.with_pipeline_lineage(C, sources=[1000 + C], targets=[10 * C])
    changes = run(at(3, 5), a, c)
    assert kinds_of(changes) == ["detached", "opened"]
    assert isinstance(changes[0], Detached) and changes[0].reason == DetachReason.UNLINKED
    assert run.rooted_at(C).started_at == at(2, 30)


def test_problem_on_pipeline_missing_from_the_graph_opens_its_own() -> None:
    run = Run(CHAIN)
    assert kinds_of(run(at(2), p(A, FAILED, at(2)), p(99, MISSED, at(2, 1)))) == [
        "opened",
        "opened",
    ]


def test_duplicate_problems_keep_the_earliest_start() -> None:
    run = Run(CHAIN)
    (opened,) = run(at(2), p(A, FAILED, at(1, 59), "b"), p(A, FAILED, at(1, 58), "a"))
    assert isinstance(opened, Opened)
    assert opened.incident.started_at == at(1, 58)


def test_acknowledgement_survives_steps() -> None:
    run = Run(CHAIN)
    a = p(A, FAILED, at(2))
    run(at(2), a)
    run.state = acknowledge(run.state, run.only().id, "ana", at(2, 3))
    run(at(2, 5), a, p(B, STALE, at(2, 4)))
    assert (run.only().acknowledged_by, run.only().acknowledged_at) == ("ana", at(2, 3))
    with pytest.raises(KeyError):
        acknowledge(run.state, 999, "ana", at(2, 3))


def test_negative_grace_is_rejected() -> None:
    with pytest.raises(ValueError, match="grace"):
        step(IncidentState(), [], CHAIN, at(2), timedelta(minutes=-1))
