"""The Watcher Python client: report pipeline runs with three lines, never break the pipeline.

    from watcher_client import WatcherClient

    with WatcherClient().track("daily_orders", "extraction") as run:
        run.inserts = load_orders(since=run.watermark)

`WatcherClient` / `AsyncWatcherClient` have one method per route of the HTTP API and raise
`WatcherError`s; `track()` records a run around your code and fails open (see `_track`).
"""

from __future__ import annotations

from watcher_client._async import AsyncWatcherClient
from watcher_client._errors import (
    APIError,
    AuthenticationError,
    BadRequest,
    Conflict,
    InvalidResponse,
    NotFound,
    PermissionDenied,
    PipelineInactive,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    Spooled,
    ValidationError,
    WatcherError,
    WatcherUnavailable,
)
from watcher_client._flush import flush as flush_spool
from watcher_client._http import RetryPolicy
from watcher_client._models import Address, Watermark
from watcher_client._sync import WatcherClient
from watcher_client._track import AsyncRun, AsyncTrack, Run, Track

__all__ = [
    "APIError",
    "Address",
    "AsyncRun",
    "AsyncTrack",
    "AsyncWatcherClient",
    "AuthenticationError",
    "BadRequest",
    "Conflict",
    "InvalidResponse",
    "NotFound",
    "PermissionDenied",
    "PipelineInactive",
    "RateLimited",
    "RetryPolicy",
    "Run",
    "ServerError",
    "ServiceUnavailable",
    "Spooled",
    "Track",
    "ValidationError",
    "WatcherClient",
    "WatcherError",
    "WatcherUnavailable",
    "Watermark",
    "flush_spool",
]
