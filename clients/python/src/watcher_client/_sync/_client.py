# Generated from _async/_client.py by scripts/unasync.py: edit that file, then run the script.
"""`WatcherClient`: one method per route of the HTTP API, blocking, on `httpx.Client`."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Unpack, cast

from watcher_client import _http
from watcher_client._models import (
    JSON,
    Address,
    Heartbeat,
    PipelineConfig,
    Watermark,
)
from watcher_client._run import Spec
from watcher_client._sync._checks import CheckRoutes
from watcher_client._sync._lineage import LineageRoutes
from watcher_client._sync._pipelines import PipelineRoutes
from watcher_client._track import Track


class WatcherClient(PipelineRoutes, LineageRoutes, CheckRoutes):
    """A blocking Watcher client. Route methods raise `WatcherError`; `track()` fails open.

    `base_url` defaults to `WATCHER_URL`, then http://127.0.0.1:8000; `token` to
    `WATCHER_TOKEN`. Every request is retried on connection errors, timeouts, 429 and 5xx;
    every route is idempotent on the server (a start carries a run_id), so a retry never
    records anything twice. Runs (starts and ends) an outage outlasts the retries are kept in
    a local spool (`spool_dir`, default WATCHER_SPOOL_DIR; `spool=False` turns it off) and
    replayed in the background once Watcher answers again.

    The routes live in mixins by resource: `_pipelines`, `_lineage`, `_checks`, on `_core`.
    """

    def __enter__(self) -> WatcherClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

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
    ) -> Track:
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
        return Track(self, spec)

    # -- service ---------------------------------------------------------------------------

    def heartbeat(self) -> Heartbeat:
        return cast(Heartbeat, self.request("GET", "/"))

    def health(self) -> JSON:
        """Readiness as the server reports it; a 503 (not ready) is returned, not raised."""
        response = self._once("GET", "/health")
        if response.status_code not in (200, 503):
            raise _http.response_error(response)
        return cast(JSON, _http.decode(response))

    def metrics(self) -> str:
        """The Prometheus exposition text."""
        response = self._once("GET", "/metrics")
        if not response.is_success:
            raise _http.response_error(response)
        return response.text
