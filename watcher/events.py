"""In-process events, emitted after a transaction commits.

The core emits them; metrics and anomaly detection subscribe. Handlers are synchronous and
cheap; an exception in one is logged and never reaches the request that emitted it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

log = logging.getLogger("watcher.events")

E = TypeVar("E")


@dataclass(frozen=True, slots=True)
class ExecutionStarted:
    execution_id: int
    pipeline_id: int
    pipeline: str
    pipeline_type: str
    start_date: datetime


@dataclass(frozen=True, slots=True)
class ExecutionEnded:
    execution_id: int
    pipeline_id: int
    pipeline: str
    pipeline_type: str
    success: bool
    end_date: datetime
    duration_seconds: float
    inserts: int | None
    updates: int | None
    soft_deletes: int | None
    total_rows: int | None
    throughput: float | None


@dataclass(frozen=True, slots=True)
class RequestFinished:
    method: str
    route: str
    status: int
    duration_seconds: float


@dataclass(frozen=True, slots=True)
class JobFinished:
    job: str
    success: bool
    duration_seconds: float
    finished_at: datetime


@dataclass(frozen=True, slots=True)
class FindingsSuppressed:
    """A check held findings back: their evidence lay where Watcher was not ingesting."""

    check: str
    reason: str
    count: int


@dataclass(frozen=True, slots=True)
class LeadershipChanged:
    is_leader: bool


class Events:
    def __init__(self) -> None:
        self._handlers: dict[type, list[Callable[[Any], None]]] = defaultdict(list)

    def subscribe(self, event_type: type[E], handler: Callable[[E], None]) -> None:
        self._handlers[event_type].append(handler)

    def emit(self, event: object) -> None:
        for handler in self._handlers.get(type(event), ()):
            try:
                handler(event)
            except Exception:
                log.exception("event handler failed", extra={"event": type(event).__name__})
