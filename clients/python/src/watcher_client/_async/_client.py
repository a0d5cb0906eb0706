"""`AsyncWatcherClient`: one method per route of the HTTP API, asyncio, on `httpx.AsyncClient`."""

# The source of _sync/: scripts/unasync.py generates it (its --check runs in `make lint`).

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Unpack, cast

from watcher_client import _http
from watcher_client._async._checks import CheckRoutes
from watcher_client._async._lineage import LineageRoutes
from watcher_client._async._pipelines import PipelineRoutes
from watcher_client._models import (
    JSON,
    Address,
    Heartbeat,
    PipelineConfig,
    Watermark,
)
from watcher_client._run import Spec
from watcher_client._track import AsyncTrack


class AsyncWatcherClient(PipelineRoutes, LineageRoutes, CheckRoutes):
    """An asyncio Watcher client. Route methods raise `WatcherError`; `track()` fails open.

    `base_url` defaults to `WATCHER_URL`, then http://127.0.0.1:8000; `token` to
    `WATCHER_TOKEN`. Every request is retried on connection errors, timeouts, 429 and 5xx;
    every route is idempotent on the server (a start carries a run_id), so a retry never
    records anything twice. Runs (starts and ends) an outage outlasts the retries are kept in
    a local spool (`spool_dir`, default WATCHER_SPOOL_DIR; `spool=False` turns it off) and
    replayed in the background once Watcher answers again.

    The routes live in mixins by resource: `_pipelines`, `_lineage`, `_checks`, on `_core`.
    """

    async def __aenter__(self) -> AsyncWatcherClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- tracking --------------------------------------------------------------------------

    def track(
        self,
        name: str,
        pipeline_type_name: str,
        *,
        next_watermark: Watermark | None = None,
        sources: Sequence[Address] = (),
        targets: Sequence[Address] = (),
        strict: bool | None = None,
        **config: Unpack[PipelineConfig],
    ) -> AsyncTrack:
        """Record a run of pipeline `name`: a context manager and a decorator (see README)."""
        spec = Spec(
            name=name,
            pipeline_type_name=pipeline_type_name,
            next_watermark=next_watermark,
            sources=sources,
            targets=targets,
            strict=self.strict if strict is None else strict,
            config=dict(config),
        )
        return AsyncTrack(self, spec)

    # -- service ---------------------------------------------------------------------------

    async def heartbeat(self) -> Heartbeat:
        return cast(Heartbeat, await self.request("GET", "/"))

    async def health(self) -> JSON:
        """Readiness as the server reports it; a 503 (not ready) is returned, not raised."""
        response = await self._once("GET", "/health")
        if response.status_code not in (200, 503):
            raise _http.response_error(response)
        return cast(JSON, _http.decode(response))

    async def metrics(self) -> str:
        """The Prometheus exposition text."""
        response = await self._once("GET", "/metrics")
        if not response.is_success:
            raise _http.response_error(response)
        return response.text
