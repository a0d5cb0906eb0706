"""One incident per root cause: which problems open incidents and which only add impact.

`step` is a pure state transition. The checks' leader job gives it the problems that are active
at `now` (every failed / missed / overdue / stale / anomalous finding, as found by the checks),
the pipeline graph and the previous `IncidentState`; it returns the next state and the
`Change` events to persist and alert on. It suppresses *creation*, never monitoring and never
resolution (OneUptime PR #3122, "incident dependencies"): every problem is still tracked, a
problem downstream of an open incident is recorded as that incident's impact instead of
opening one of its own, and an incident resolves as soon as its root's problems clear.

Rules (see /work/notes/issue15-design.md for the reasoning):

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
from enum import StrEnum
from typing import ClassVar, TypeAlias

from watcher.incidents.graph import PipelineGraph

DEFAULT_GRACE = timedelta(minutes=15)
"""How long an impacted pipeline may stay broken after its root resolved before it is promoted.

Long enough for the downstream schedulers and sensors (typically polling every few minutes) to
rerun and for the freshness checks (every minute) to see the refresh; short enough that a real
second failure is alerted within a quarter of an hour.
"""


class ProblemKind(StrEnum):
    FAILED = "failed"  # the last run failed
    MISSED = "missed"  # a scheduled run is missed or late
    OVERDUE = "overdue"  # a run is taking too long
    STALE = "stale"  # a target was not refreshed in time
    ANOMALOUS = "anomalous"  # a value is out of its band


class DetachReason(StrEnum):
    CLEARED = "cleared"  # the problem is no longer reported
    UNLINKED = "unlinked"  # a lineage change: the root is no longer upstream
    ROOT_RESOLVED = "root_resolved"  # the incident resolved while this problem stayed active


class ChangeKind(StrEnum):
    OPENED = "opened"
    ATTACHED = "attached"
    DETACHED = "detached"
    RESOLVED = "resolved"
    PROMOTED = "promoted"


ProblemKey: TypeAlias = tuple[int, ProblemKind]


@dataclass(frozen=True)
class Problem:
    """An active finding of a check: what is wrong with which pipeline, since when."""

    pipeline_id: int
    kind: ProblemKind
    started_at: datetime
    detail: str = ""

    @property
    def key(self) -> ProblemKey:
        return (self.pipeline_id, self.kind)


@dataclass(frozen=True)
class ImpactRecord:
    """One problem within an incident: the root's own (depth 0) or an impacted pipeline's."""

    pipeline_id: int
    kind: ProblemKind
    depth: int
    started_at: datetime
    attached_at: datetime
    also_upstream: tuple[int, ...] = ()
    """Other open incidents upstream that were eligible when it attached (their ids)."""
    detached_at: datetime | None = None
    reason: DetachReason | None = None

    @property
    def key(self) -> ProblemKey:
        return (self.pipeline_id, self.kind)


@dataclass(frozen=True)
class Impact:
    """The per-pipeline view of an incident's active impact."""

    depth: int
    kinds: frozenset[ProblemKind]
    since: datetime
    also_upstream: frozenset[int]


@dataclass(frozen=True)
class Incident:
    id: int
    root_pipeline_id: int
    started_at: datetime
    """Evidence time of the problem that opened it; fixed for the incident's life."""
    opened_at: datetime
    """The `now` of the step that opened (or promoted) it."""
    active: tuple[ImpactRecord, ...]
    """Active problems, root ones (depth 0) included, sorted by (pipeline_id, kind)."""
    history: tuple[ImpactRecord, ...] = ()
    """Problems that left the incident, in the order they did (with detached_at and reason)."""
    resolved_at: datetime | None = None
    promoted_from: int | None = None
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None

    @property
    def root_kinds(self) -> frozenset[ProblemKind]:
        return frozenset(r.kind for r in self.active if r.depth == 0)

    @property
    def impacted(self) -> dict[int, Impact]:
        """pipeline_id → (depth, kinds, since, also_upstream) of the active impact."""
        grouped: dict[int, list[ImpactRecord]] = {}
        for record in self.active:
            if record.depth > 0:
                grouped.setdefault(record.pipeline_id, []).append(record)
        return {
            pipeline: Impact(
                depth=min(r.depth for r in records),
                kinds=frozenset(r.kind for r in records),
                since=min(r.started_at for r in records),
                also_upstream=frozenset(i for r in records for i in r.also_upstream),
            )
            for pipeline, records in sorted(grouped.items())
        }

    @property
    def ever_impacted(self) -> frozenset[int]:
        """Every pipeline other than the root that was ever part of the incident."""
        return frozenset(r.pipeline_id for r in (*self.active, *self.history) if r.depth > 0) - {
            self.root_pipeline_id
        }


@dataclass(frozen=True)
class Pending:
    """A problem left active by a resolved incident, waiting for `due_at` to be promoted."""

    pipeline_id: int
    kind: ProblemKind
    started_at: datetime
    from_incident_id: int
    depth: int
    due_at: datetime

    @property
    def key(self) -> ProblemKey:
        return (self.pipeline_id, self.kind)


@dataclass(frozen=True)
class IncidentState:
    """The open incidents, the pending orphans and the id counter."""

    incidents: tuple[Incident, ...] = ()
    """Open incidents, sorted by id (resolved ones leave the state with their Resolved event)."""
    pending: tuple[Pending, ...] = ()
    """Sorted by (pipeline_id, kind)."""
    next_id: int = 1

    def incident(self, incident_id: int) -> Incident | None:
        return next((i for i in self.incidents if i.id == incident_id), None)

    def incident_of(self, key: ProblemKey) -> Incident | None:
        """The open incident holding the problem (as root or impact), if any."""
        for incident in self.incidents:
            if any(r.key == key for r in incident.active):
                return incident
        return None


# -- changes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Opened:
    kind: ClassVar[ChangeKind] = ChangeKind.OPENED
    incident: Incident
    """Snapshot right after opening: only the root problems (attachments follow as events)."""
    problems: tuple[Problem, ...]


@dataclass(frozen=True)
class Promoted:
    kind: ClassVar[ChangeKind] = ChangeKind.PROMOTED
    incident: Incident
    problems: tuple[Problem, ...]
    from_incident_id: int


@dataclass(frozen=True)
class Attached:
    kind: ClassVar[ChangeKind] = ChangeKind.ATTACHED
    incident_id: int
    problem: Problem
    depth: int
    """0 when the problem is another problem of the root pipeline."""
    also_upstream: tuple[int, ...] = ()


@dataclass(frozen=True)
class Detached:
    kind: ClassVar[ChangeKind] = ChangeKind.DETACHED
    incident_id: int
    pipeline_id: int
    problem_kind: ProblemKind
    depth: int
    reason: DetachReason


@dataclass(frozen=True)
class Resolved:
    kind: ClassVar[ChangeKind] = ChangeKind.RESOLVED
    incident: Incident
    """Final snapshot: resolved_at set, no active records, the full history."""
    orphans: tuple[ProblemKey, ...] = ()
    """Problems still active at resolution: re-attached in this step or pending until…"""
    promote_after: datetime | None = None


Change: TypeAlias = Opened | Promoted | Attached | Detached | Resolved


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
