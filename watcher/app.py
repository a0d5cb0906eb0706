"""The application factory: services, feature routers, middleware and error envelope."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import ModuleType

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from watcher import (
    addresses,
    auth,
    executions,
    health,
    lineage,
    lineage_graph,
    openapi,
    pipeline_types,
    pipelines,
)
from watcher.availability import heartbeat
from watcher.checks import anomalies, cleanup, freshness, missed_runs, timeliness
from watcher.checks.learned import maintenance
from watcher.checks.learned import routes as learned
from watcher.clock import Clock
from watcher.config import Settings
from watcher.db.engine import (
    create_engine,
    is_data_error,
    is_integrity_error,
    sqlstate,
    unavailable,
)
from watcher.errors import (
    Busy,
    Conflict,
    InvalidInput,
    Unauthorized,
    Unavailable,
    WatcherError,
)
from watcher.events import Events
from watcher.incidents import routes as incidents
from watcher.logs import RequestLogMiddleware
from watcher.metrics import routes as metrics
from watcher.openlineage import routes as openlineage
from watcher.profiling import ProfilingMiddleware
from watcher.routing import JSONResponse, Operation
from watcher.scheduler import Scheduler
from watcher.services import Services

log = logging.getLogger("watcher.app")

# Each feature module exposes `router` and may expose `setup(services)` (subscribe to events,
# add scheduler jobs). Order matters only for the OpenAPI document.
FEATURES: tuple[ModuleType, ...] = (
    auth,  # first: its setup installs the authorizer
    health,
    pipeline_types,
    pipelines,
    executions,
    addresses,
    lineage,
    metrics,
    timeliness,
    freshness,
    missed_runs,
    anomalies,
    cleanup,
    openlineage,
    lineage_graph,
    learned,
    maintenance,
    incidents,
    heartbeat,  # after metrics: exports its families in the scraped registry
)


def operations() -> list[Operation]:
    return [op for feature in FEATURES for op in feature.router.operations]


def error_response(error: WatcherError, retry_after: int) -> Response:
    headers = {"Retry-After": str(retry_after)} if isinstance(error, Unavailable) else None
    if isinstance(error, Unauthorized):
        headers = {"WWW-Authenticate": 'Bearer realm="watcher"'}
    return JSONResponse(error.body(), status_code=error.status_code, headers=headers)


class ErrorMiddleware:
    """Turns any exception into the JSON error envelope; never leaks a traceback."""

    def __init__(self, app: ASGIApp, retry_after: int) -> None:
        self.app = app
        self.retry_after = retry_after

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as error:
            if started:
                raise
            response = self._render(error)
            await response(scope, receive, send)

    def _render(self, error: Exception) -> Response:
        """Database errors that escaped the domain code get a status of their kind, with a
        generic message: the body never carries SQL, parameters or constraint internals."""
        if isinstance(error, WatcherError):
            return error_response(error, self.retry_after)
        if (busy := unavailable(error)) is not None:
            what = "busy" if isinstance(busy, Busy) else "unavailable"
            log.warning("database %s: %s (%s)", what, type(error).__name__, sqlstate(error))
            return error_response(busy, self.retry_after)
        if is_data_error(error):
            log.warning("database refused a value (sqlstate %s)", sqlstate(error))
            return error_response(
                InvalidInput("invalid request: a value is out of range for the database"),
                self.retry_after,
            )
        if is_integrity_error(error):
            log.warning("database constraint violated (sqlstate %s)", sqlstate(error))
            return error_response(
                Conflict("the request conflicts with stored data"), self.retry_after
            )
        log.exception("unhandled error")
        return JSONResponse({"detail": "internal server error", "errors": []}, status_code=500)


async def _http_exception(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    detail = {404: "not found", 405: "method not allowed"}.get(error.status_code, error.detail)
    return JSONResponse(
        {"detail": detail, "errors": []}, status_code=error.status_code, headers=error.headers
    )


async def _watcher_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, WatcherError)
    return error_response(error, request.app.state.services.settings.retry_after_seconds)


def _plain_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def create_app(
    settings: Settings,
    *,
    database_url: str,
    clock: Clock | None = None,
    registry: CollectorRegistry | None = None,
) -> Starlette:
    clock = clock or Clock()
    events = Events()
    services = Services(
        settings=settings,
        engine=create_engine(database_url, settings),
        database_url=database_url,
        clock=clock,
        events=events,
        scheduler=Scheduler(
            _plain_dsn(database_url),
            lock_id=settings.leader_lock_id,
            check_seconds=settings.leader_check_interval_seconds,
            clock=clock,
            events=events,
            enabled=settings.scheduler_enabled,
            stop_grace_seconds=settings.scheduler_stop_grace_seconds,
        ),
        registry=registry if registry is not None else CollectorRegistry(),
    )
    for feature in FEATURES:
        setup = getattr(feature, "setup", None)
        if setup is not None:
            setup(services)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await services.scheduler.start()
        try:
            yield
        finally:
            await services.scheduler.stop()
            await services.engine.dispose()

    routes: list[BaseRoute] = [op.route() for op in operations()]
    routes += openapi.routes(operations)
    middleware = [
        Middleware(RequestLogMiddleware, events=events),
        Middleware(ErrorMiddleware, retry_after=settings.retry_after_seconds),
    ]
    if settings.profiling:
        middleware.append(Middleware(ProfilingMiddleware))
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={HTTPException: _http_exception, WatcherError: _watcher_error},
        lifespan=lifespan,
    )
    app.state.services = services
    return app
