"""Lineage-aware incidents: one incident per root cause (issue 15).

A pure core, no I/O: `graph` (which pipelines are upstream of which, and the pipeline_closure
rows), `attachment` (the `step` transition deciding which problems open, join, leave and
resolve incidents) and `summary` (message text). docs/incidents.md explains
the behaviour.
"""

from __future__ import annotations

from watcher.incidents.attachment import acknowledge, step
from watcher.incidents.graph import (
    ClosureDiff,
    ClosureRow,
    LineageEdge,
    NestingPair,
    PipelineGraph,
    closure_delta,
    closure_rows,
    diff_rows,
)
from watcher.incidents.model import (
    DEFAULT_GRACE,
    Attached,
    Change,
    ChangeKind,
    Detached,
    DetachReason,
    Impact,
    ImpactRecord,
    Incident,
    IncidentState,
    Opened,
    Pending,
    Problem,
    ProblemKey,
    ProblemKind,
    Promoted,
    Resolved,
)

__all__ = [
    "DEFAULT_GRACE",
    "Attached",
    "Change",
    "ChangeKind",
    "ClosureDiff",
    "ClosureRow",
    "DetachReason",
    "Detached",
    "Impact",
    "ImpactRecord",
    "Incident",
    "IncidentState",
    "LineageEdge",
    "NestingPair",
    "Opened",
    "Pending",
    "PipelineGraph",
    "Problem",
    "ProblemKey",
    "ProblemKind",
    "Promoted",
    "Resolved",
    "acknowledge",
    "closure_delta",
    "closure_rows",
    "diff_rows",
    "step",
]
