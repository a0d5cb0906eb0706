"""What a running Watcher holds: settings, the engine, the clock, events, scheduler, registry.

Created once by the app factory and reachable from a request as `request.app.state.services`.
Feature modules receive it in `setup(services)`; nothing reads globals.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request

from watcher.clock import Clock
from watcher.config import Settings
from watcher.events import Events

if TYPE_CHECKING:
    from watcher.checks.anomalies.detector import Detector
    from watcher.metrics.store import Telemetry
    from watcher.routing import Scope
    from watcher.scheduler import Scheduler

Authorizer = Callable[[Request, "Scope"], Awaitable[None]]


async def allow_all(request: Request, scope: Scope) -> None:
    """The authorizer until an auth feature installs its own."""


@dataclass
class Services:
    settings: Settings
    engine: AsyncEngine
    database_url: str
    clock: Clock
    events: Events
    scheduler: Scheduler
    registry: CollectorRegistry
    authorizer: Authorizer = allow_all
    # Installed by the features' setup (watcher.metrics.routes, watcher.checks.anomalies).
    telemetry: Telemetry = field(init=False)
    detector: Detector = field(init=False)

    async def authorize(self, request: Request, scope: Scope) -> None:
        await self.authorizer(request, scope)


def services_of(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]
