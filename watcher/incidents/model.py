"""The values of the incident engine: problems, impact records, incidents, the state and
the `Change` events `step` returns. Frozen, with tuples in canonical order, so equal states
compare equal (see `attachment` for the rules)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import ClassVar, TypeAlias

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
