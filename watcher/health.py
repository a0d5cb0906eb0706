"""Liveness (`/`) and readiness (`/health`): is the database reachable, is the scheduler up."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel
from sqlalchemy import text
from starlette.requests import Request

from watcher import __version__
from watcher.db.engine import is_saturated
from watcher.routing import JSONResponse, Router
from watcher.services import Services, services_of

router = Router("health")


class Heartbeat(BaseModel):
    status: str


class DatabaseHealth(BaseModel):
    status: str
    error: str | None = None  # the exception's class name, when unavailable or busy


class SchedulerHealth(BaseModel):
    enabled: bool
    running: bool
    is_leader: bool
    jobs: list[str]


class Health(BaseModel):
    status: str
    version: str
    database: DatabaseHealth
    scheduler: SchedulerHealth


def _pool_busy(services: Services, error: BaseException) -> bool:
    """The probe failed because no pooled connection came free, not because of PostgreSQL."""
    if is_saturated(error):
        return True
    pool = services.engine.sync_engine.pool
    maximum = services.settings.db_pool_size + services.settings.db_max_overflow
    return isinstance(error, TimeoutError) and getattr(pool, "checkedout", lambda: 0)() >= maximum


@router.get("/", scope="public", response=Heartbeat)
async def heartbeat(request: Request) -> dict[str, str]:
    """Heartbeat."""
    return {"status": "ok"}


@router.get("/health", scope="public", response=Health, responses={503: ("not ready", Health)})
async def health(request: Request) -> JSONResponse:
    """Readiness: database reachable and scheduler state; 503 when not ready ("busy", every
    pooled connection in use, is ready: the requests queue)."""
    services = services_of(request)
    database: dict[str, Any] = {"status": "ok"}
    try:
        async with asyncio.timeout(services.settings.db_connect_timeout_seconds):
            async with services.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    except Exception as error:
        status = "busy" if _pool_busy(services, error) else "unavailable"
        database = {"status": status, "error": type(error).__name__}
    scheduler = services.scheduler
    # Busy (every pooled connection in use: a burst, queued) is still ready: failing the
    # probe would take every replica out of rotation at once at the top of the hour.
    ready = database["status"] in ("ok", "busy")
    body = {
        "status": database["status"] if ready else "unavailable",
        "version": __version__,
        "database": database,
        "scheduler": {
            "enabled": scheduler.enabled,
            "running": scheduler.running,
            "is_leader": scheduler.is_leader,
            "jobs": sorted(scheduler.jobs),
        },
    }
    if ready:
        return JSONResponse(body)
    retry_after = str(services.settings.retry_after_seconds)
    return JSONResponse(body, status_code=503, headers={"Retry-After": retry_after})
