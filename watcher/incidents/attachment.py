"""One incident per root cause: which problems open incidents and which only add impact.

`step` is a pure state transition. The checks' leader job gives it the problems that are active
at `now` (every failed / missed / overdue / stale / anomalous finding, as found by the checks),
the pipeline graph and the previous `IncidentState`; it returns the next state and the
`Change` events to persist and alert on. It suppresses *creation*, never monitoring and never
resolution (OneUptime PR #3122, "incident dependencies"): every problem is still tracked, a
problem downstream of an open incident is recorded as that incident's impact instead of
opening one of its own, and an incident resolves as soon as its root's problems clear.

Rules (docs/incidents.md has the user-facing account):

- A problem is identified by (pipeline_id, kind); its `started_at` is the evidence time first
  seen and does not move while the problem stays active.
- A problem on pipeline P joins, in order of preference:
  1. the open incident rooted at P itself (a root keeps all its own problems: depth 0);
  2. else the open incident, rooted upstream of P at any depth in the *current* graph, whose
     `started_at` ≤ the problem's `started_at`: the earliest-started one, ties by lowest id; the
     other eligible incidents are recorded as `also_upstream`;
  3. else it opens an incident of its own (problems are taken earliest-start first, so one step
     seeing A failed and B stale builds the same incident as two steps would; at equal starts
     the most-upstream pipeline, then the lowest pipeline id, becomes the root — which also
     picks the root of a cycle).
- Attachments are sticky: an attached problem stays with its incident until it clears
  (Detached: cleared), the incident's root is no longer upstream after a lineage change
  (Detached: unlinked; the problem is then placed again), or the incident resolves.
  Incidents are never re-rooted or merged.
- An incident resolves when all its root problems have cleared. Its impacted problems still
  active at that moment are detached (root_resolved) and become *pending*: they re-attach at
  once to another eligible incident if there is one, or else wait `grace`; if still active
  after it, the pipeline is promoted to an incident of its own whose `started_at` is the
  original problem start (so that its own downstream orphans attach to it rather than being
  promoted one by one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from watcher.incidents.graph import PipelineGraph
from watcher.incidents.model import (
    DEFAULT_GRACE,
    Attached,
    Change,
    Detached,
    DetachReason,
    ImpactRecord,
    Incident,
    IncidentState,
    Opened,
    Pending,
    Problem,
    ProblemKey,
    Promoted,
    Resolved,
)

__all__ = ["acknowledge", "normalize", "step"]


# -- the transition --------------------------------------------------------------------------


@dataclass
class _Open:
    """A mutable working copy of an open incident during one step."""

    incident: Incident
    active: dict[ProblemKey, ImpactRecord] = field(default_factory=dict)
    history: list[ImpactRecord] = field(default_factory=list)

    def freeze(self) -> Incident:
        return replace(
            self.incident,
            active=tuple(self.active[k] for k in sorted(self.active)),
            history=(*self.incident.history, *self.history),
        )


def normalize(problems: Iterable[Problem]) -> dict[ProblemKey, Problem]:
    """One problem per (pipeline, kind): the earliest start (then the smallest detail) wins."""
    chosen: dict[ProblemKey, Problem] = {}
    for problem in problems:
        current = chosen.get(problem.key)
        if current is None or (problem.started_at, problem.detail) < (
            current.started_at,
            current.detail,
        ):
            chosen[problem.key] = problem
    return chosen


def step(
    state: IncidentState,
    problems: Sequence[Problem],
    graph: PipelineGraph,
    now: datetime,
    grace: timedelta = DEFAULT_GRACE,
) -> tuple[IncidentState, list[Change]]:
    """The next state and its changes, given every problem active at `now`."""
    if grace < timedelta(0):
        raise ValueError("grace must not be negative")
    active = normalize(problems)
    changes: list[Change] = []
    upstream_cache: dict[int, dict[int, int]] = {}

    def upstream(pipeline_id: int) -> dict[int, int]:
        if pipeline_id not in upstream_cache:
            upstream_cache[pipeline_id] = graph.upstream(pipeline_id)
        return upstream_cache[pipeline_id]

    # 1. Existing incidents: drop cleared and unlinked problems, resolve those without a root.
    opened: dict[int, _Open] = {}
    pending: dict[ProblemKey, Pending] = {}
    for incident in sorted(state.incidents, key=lambda i: i.id):
        work = _Open(incident)
        for record in incident.active:
            reason: DetachReason | None = None
            if record.key not in active:
                reason = DetachReason.CLEARED
            elif record.depth > 0 and incident.root_pipeline_id not in upstream(record.pipeline_id):
                reason = DetachReason.UNLINKED
            if reason is None:
                work.active[record.key] = record
            else:
                work.history.append(replace(record, detached_at=now, reason=reason))
                changes.append(
                    Detached(incident.id, record.pipeline_id, record.kind, record.depth, reason)
                )
        if any(r.depth == 0 for r in work.active.values()):
            opened[incident.id] = work
            continue
        due = now + grace
        orphans: list[ProblemKey] = []
        for key in sorted(work.active):
            record = work.active[key]
            work.history.append(replace(record, detached_at=now, reason=DetachReason.ROOT_RESOLVED))
            changes.append(
                Detached(
                    incident.id,
                    record.pipeline_id,
                    record.kind,
                    record.depth,
                    DetachReason.ROOT_RESOLVED,
                )
            )
            pending[key] = Pending(
                record.pipeline_id, record.kind, record.started_at, incident.id, record.depth, due
            )
            orphans.append(key)
        work.active.clear()
        final = replace(work.freeze(), resolved_at=now)
        changes.append(Resolved(final, tuple(orphans), due if orphans else None))

    # 2. Pending orphans whose problem cleared are forgotten (their incident already resolved).
    placed = {key for work in opened.values() for key in work.active}
    for item in state.pending:
        if item.key in active and item.key not in placed and item.key not in pending:
            pending[item.key] = item
    unplaced = {k: p for k, p in active.items() if k not in placed and k not in pending}
    next_id = state.next_id

    def start_of(key: ProblemKey) -> datetime:
        return pending[key].started_at if key in pending else active[key].started_at

    def problem_of(key: ProblemKey) -> Problem:
        return replace(active[key], started_at=start_of(key))

    # 3. Place every waiting (unplaced or pending) problem. A first pass offers all open
    # incidents; then roots are opened one at a time, earliest problem first, and each new
    # incident is offered to the waiting problems of its own downstream only: nothing else can
    # have become eligible, since those problems had no eligible host before it opened.
    waiting: dict[int, set[ProblemKey]] = {}
    for key in (*unplaced, *pending):
        waiting.setdefault(key[0], set()).add(key)

    def take(key: ProblemKey) -> None:
        unplaced.pop(key, None)
        pending.pop(key, None)
        keys = waiting[key[0]]
        keys.discard(key)
        if not keys:
            del waiting[key[0]]

    def by_start(keys: Iterable[ProblemKey]) -> list[ProblemKey]:
        return sorted(keys, key=lambda k: (start_of(k), k))

    hosts = [opened[i] for i in sorted(opened)]
    offer = by_start(k for keys in waiting.values() for k in keys)
    _attach(offer, hosts, start_of, problem_of, upstream, now, changes, take)
    # Openers: new problems at once, orphans only once their grace is over.
    order = by_start([*unplaced, *(k for k, p in pending.items() if p.due_at <= now)])
    position = 0
    while True:
        while position < len(order) and order[position] not in waiting.get(order[position][0], ()):
            position += 1
        if position == len(order):
            break
        earliest = start_of(order[position])
        tied: set[int] = set()
        for key in order[position:]:
            if start_of(key) != earliest:
                break
            if key in waiting.get(key[0], ()):
                tied.add(key[0])
        root = _choose_root(tied, upstream)
        first = next(k for k in order[position:] if k[0] == root and k in waiting[root])
        keys = sorted(waiting[root])  # all of the root pipeline's problems, pending ones too
        records = {k: ImpactRecord(root, k[1], 0, start_of(k), now) for k in keys}
        promoted_from = pending[first].from_incident_id if first in pending else None
        incident = Incident(
            id=next_id,
            root_pipeline_id=root,
            started_at=min(start_of(k) for k in keys),
            opened_at=now,
            active=tuple(records[k] for k in keys),
            promoted_from=promoted_from,
        )
        next_id += 1
        roots = tuple(problem_of(k) for k in keys)
        for key in keys:
            take(key)
        opened[incident.id] = _Open(incident, dict(records))
        if promoted_from is None:
            changes.append(Opened(incident, roots))
        else:
            changes.append(Promoted(incident, roots, promoted_from))
        below = graph.downstream(root)
        offer = by_start(k for pid in below if pid in waiting for k in waiting[pid])
        _attach(offer, [opened[incident.id]], start_of, problem_of, upstream, now, changes, take)

    new_state = IncidentState(
        incidents=tuple(opened[i].freeze() for i in sorted(opened)),
        pending=tuple(pending[k] for k in sorted(pending)),
        next_id=next_id,
    )
    return new_state, changes


def _attach(
    keys: Sequence[ProblemKey],
    hosts: Sequence[_Open],
    start_of: Callable[[ProblemKey], datetime],
    problem_of: Callable[[ProblemKey], Problem],
    upstream: Callable[[int], dict[int, int]],
    now: datetime,
    changes: list[Change],
    take: Callable[[ProblemKey], None],
) -> None:
    """Attach each of `keys` (in order) that has an eligible incident among `hosts`."""
    by_root = {work.incident.root_pipeline_id: work for work in hosts}
    for key in keys:
        pipeline_id, kind = key
        started = start_of(key)
        own = by_root.get(pipeline_id)
        also: tuple[int, ...] = ()
        if own is not None:
            host, depth = own, 0
        else:
            ups = upstream(pipeline_id)
            eligible = sorted(
                (
                    work
                    for work in hosts
                    if work.incident.root_pipeline_id in ups and work.incident.started_at <= started
                ),
                key=lambda w: (w.incident.started_at, w.incident.id),
            )
            if not eligible:
                continue
            host = eligible[0]
            depth = ups[host.incident.root_pipeline_id]
            also = tuple(sorted(w.incident.id for w in eligible[1:]))
        host.active[key] = ImpactRecord(pipeline_id, kind, depth, started, now, also)
        changes.append(Attached(host.incident.id, problem_of(key), depth, also))
        take(key)


def _choose_root(tied: set[int], upstream: Callable[[int], dict[int, int]]) -> int:
    """Among pipelines with equally early problems: the most upstream, then the lowest id."""
    free = [p for p in sorted(tied) if not any(o != p and o in upstream(p) for o in tied)]
    return free[0] if free else min(tied)


def acknowledge(state: IncidentState, incident_id: int, by: str, at: datetime) -> IncidentState:
    """The state with the open incident acknowledged (step keeps acknowledgements)."""
    if state.incident(incident_id) is None:
        raise KeyError(incident_id)
    return replace(
        state,
        incidents=tuple(
            replace(i, acknowledged_by=by, acknowledged_at=at) if i.id == incident_id else i
            for i in state.incidents
        ),
    )
