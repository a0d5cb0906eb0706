"""Liveness (`/`) and readiness (`/health`): is the database reachable, is the scheduler up."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel
from sqlalchemy import text
from starlette.requests import Request

from watcher import __version__
from watcher.routing import JSONResponse, Router
from watcher.services import services_of

router = Router("health")


class Heartbeat(BaseModel):
    status: str


class DatabaseHealth(BaseModel):
    status: str
    error: str | None = None  # the exception's class name, when unavailable


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


@router.get("/", scope="public", response=Heartbeat)
async def heartbeat(request: Request) -> dict[str, str]:
    """Heartbeat."""
    return {"status": "ok"}


@router.get("/health", scope="public", response=Health, responses={503: ("not ready", Health)})
async def health(request: Request) -> JSONResponse:
    """Readiness: database reachable and scheduler state; 503 when not ready."""
    services = services_of(request)
    database: dict[str, Any] = {"status": "ok"}
    try:
        async with asyncio.timeout(services.settings.db_connect_timeout_seconds):
            async with services.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    except Exception as error:
        database = {"status": "unavailable", "error": type(error).__name__}
    scheduler = services.scheduler
    ready = database["status"] == "ok"
    body = {
        "status": "ok" if ready else "unavailable",
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
