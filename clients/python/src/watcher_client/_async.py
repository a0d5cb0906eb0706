"""`AsyncWatcherClient`: one method per route of the HTTP API, asyncio, on `httpx.AsyncClient`."""

# The source of _sync.py: scripts/unasync.py generates it (its --check runs in `make lint`).

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Unpack, cast
from uuid import uuid4

import httpx

from watcher_client import _flush, _http
from watcher_client._errors import Spooled, ValidationError, WatcherError
from watcher_client._models import (
    JSON,
    Address,
    AddressType,
    AnomalyRule,
    AnomalyRuleFields,
    Cleanup,
    Created,
    Detection,
    Execution,
    ExecutionFilter,
    ExpectationSettings,
    FreshnessCheck,
    Heartbeat,
    LineageBatchResult,
    LineageCreated,
    LineageEventResult,
    LineageGraph,
    MissedRunsCheck,
    NodeGraph,
    Pipeline,
    PipelineConfig,
    PipelineFields,
    PipelineSync,
    PipelineType,
    PipelineTypeFields,
    PipelineUpdate,
    StoredAddress,
    TimelinessCheck,
    Watermark,
)
from watcher_client._run import Spec
from watcher_client._spool import spoolable as _spoolable
from watcher_client._track import AsyncTrack

logger = logging.getLogger("watcher_client")


class AsyncWatcherClient:
    """An asyncio Watcher client. Route methods raise `WatcherError`; `track()` fails open.

    `base_url` defaults to `WATCHER_URL`, then http://127.0.0.1:8000; `token` to
    `WATCHER_TOKEN`. Every request is retried on connection errors, timeouts, 429 and 5xx;
    every route is idempotent on the server (a start carries a run_id), so a retry never
    records anything twice. Runs (starts and ends) an outage outlasts the retries are kept in
    a local spool (`spool_dir`, default WATCHER_SPOOL_DIR; `spool=False` turns it off) and
    replayed in the background once Watcher answers again.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        token: str | None = None,
        timeout: float | httpx.Timeout | None = None,
        retry: _http.RetryPolicy | None = None,
        strict: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
        env: Mapping[str, str] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        spool: bool | None = None,
        spool_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        environ = os.environ if env is None else env
        self.settings = _http.Settings.resolve(base_url, token, timeout, environ)
        # Calls an outage made impossible, kept on disk and replayed (`_spool`, `_flush`).
        self.spool = _flush.spool_from_env(spool, spool_dir, environ, self.settings.base_url)
        self._flusher = None if self.spool is None else _flush.Background(self.spool, self.settings)
        self.retry = retry or _http.RetryPolicy()
        self.strict = strict
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            base_url=self.settings.base_url,
            headers=self.settings.headers(),
            timeout=self.settings.timeout,
            transport=transport,
        )

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

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: _http.Body | None = None,
        params: Mapping[str, Any] | None = None,
        retry: bool = True,
    ) -> Any:
        """Send one request, retrying per `self.retry`; return the decoded JSON (None for 204)."""
        attempt = 0
        while True:
            try:
                response = await self._send(method, path, body, params)
                if response.is_success:
                    if self._flusher is not None:
                        self._flusher.succeeded()
                    return _http.decode(response)
                error = _http.response_error(response)
            except _http.REQUEST_ERRORS as exc:
                error = _http.request_error(exc)
            delay = self.retry.delay(attempt, error) if retry else None
            if delay is None:
                raise error
            logger.debug("retrying %s %s in %.2fs after: %s", method, path, delay, error)
            await self._sleep(delay)
            attempt += 1

    async def _send(
        self,
        method: str,
        path: str,
        body: _http.Body | None,
        params: Mapping[str, Any] | None,
    ) -> httpx.Response:
        content = None if body is None else _http.encode(body)
        headers = {} if body is None else {"Content-Type": "application/json"}
        query = None if params is None else _http.query(params)
        return await self._http.request(
            method, path, content=content, params=query, headers=headers
        )

    async def _once(self, method: str, path: str) -> httpx.Response:
        try:
            return await self._send(method, path, None, None)
        except _http.REQUEST_ERRORS as exc:
            raise _http.request_error(exc) from exc

    def _spool_call(self, kind: str, entry: Mapping[str, Any]) -> bool:
        """Append one call to the spool; False when there is none (or it dropped the run)."""
        if self.spool is None or self._flusher is None:
            return False
        fields = {k: v for k, v in entry.items() if k not in ("method", "path", "body", "run")}
        run = entry.get("run")
        stored = self.spool.append(
            kind, entry["method"], entry["path"], entry["body"], run=run, **fields
        )
        if stored:
            self._flusher.spooled()
        return stored

    def _spool_raw(self, error: WatcherError, kind: str, path: str, body: JSON) -> bool:
        if not _spoolable(error):
            return False
        # The replay reports when the call was made, not when Watcher came back.
        when = "start_date" if kind == "start" else "end_date"
        body = {when: datetime.now(UTC), **body}
        entry = {"method": "POST", "path": path, "body": body, "run": None}
        return self._spool_call(kind, entry)

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

    # -- pipeline types --------------------------------------------------------------------

    async def create_pipeline_type(
        self, name: str, **fields: Unpack[PipelineTypeFields]
    ) -> PipelineType:
        """Create-or-get by name (case-insensitive)."""
        return cast(
            PipelineType,
            await self.request("POST", "/pipeline_type", body={"name": name, **fields}),
        )

    async def list_pipeline_types(
        self, limit: int | None = None, offset: int | None = None
    ) -> list[PipelineType]:
        return cast(
            list[PipelineType],
            await self.request("GET", "/pipeline_type", params={"limit": limit, "offset": offset}),
        )

    async def get_pipeline_type(self, pipeline_type_id: int) -> PipelineType:
        return cast(PipelineType, await self.request("GET", f"/pipeline_type/{pipeline_type_id}"))

    async def update_pipeline_type(
        self, id_or_name: int | str, **fields: Unpack[PipelineTypeFields]
    ) -> PipelineType:
        return cast(
            PipelineType,
            await self.request("PATCH", "/pipeline_type", body={**_key(id_or_name), **fields}),
        )

    # -- pipelines -------------------------------------------------------------------------

    async def create_pipeline(
        self, name: str, pipeline_type_name: str, **fields: Unpack[PipelineFields]
    ) -> PipelineSync:
        """Create-or-get by name; updates changed config. `watermark` is the one to start from."""
        body = _http.pipeline_body(name, pipeline_type_name, dict(fields))
        return cast(PipelineSync, await self.request("POST", "/pipeline", body=body))

    async def list_pipelines(
        self, limit: int | None = None, offset: int | None = None
    ) -> list[Pipeline]:
        return cast(
            list[Pipeline],
            await self.request("GET", "/pipeline", params={"limit": limit, "offset": offset}),
        )

    async def get_pipeline(self, pipeline_id: int) -> Pipeline:
        return cast(Pipeline, await self.request("GET", f"/pipeline/{pipeline_id}"))

    async def update_pipeline(
        self, id_or_name: int | str, **fields: Unpack[PipelineUpdate]
    ) -> Pipeline:
        body = _http.watermarks_as_text({**_key(id_or_name), **fields})
        return cast(Pipeline, await self.request("PATCH", "/pipeline", body=body))

    # -- executions ------------------------------------------------------------------------

    async def start_execution(
        self,
        pipeline_id: int | None = None,
        *,
        pipeline_name: str | None = None,
        start_date: datetime | None = None,
        parent_id: int | None = None,
        watermark: Watermark | None = None,
        next_watermark: Watermark | None = None,
        run_id: str | None = None,
    ) -> Created:
        """Start an execution. A run_id (a fresh uuid4 unless given) makes retries safe.

        When an outage outlasts the retries the start is spooled (with its start_date, now
        unless given) and `Spooled` is raised, carrying the run_id.
        """
        body = _http.start_body(
            pipeline_id,
            pipeline_name,
            start_date,
            parent_id,
            watermark,
            next_watermark,
            run_id or str(uuid4()),
        )
        path = "/start_pipeline_execution"
        try:
            return cast(Created, await self.request("POST", path, body=body))
        except WatcherError as error:
            if self._spool_raw(error, "start", path, body):
                raise Spooled(f"start spooled after: {error}", body["run_id"]) from error
            raise

    async def end_execution(
        self,
        execution_id: int,
        *,
        completed_successfully: bool = True,
        end_date: datetime | None = None,
        inserts: int | None = None,
        updates: int | None = None,
        soft_deletes: int | None = None,
        total_rows: int | None = None,
        execution_metadata: JSON | None = None,
    ) -> None:
        """End an execution; sending the same values again is a no-op on the server.

        When an outage outlasts the retries the end is spooled (with its end_date, now unless
        given) and replayed later; the call returns as if it had been taken.
        """
        body = _http.compact(
            id=execution_id,
            completed_successfully=completed_successfully,
            end_date=end_date,
            inserts=inserts,
            updates=updates,
            soft_deletes=soft_deletes,
            total_rows=total_rows,
            execution_metadata=execution_metadata,
        )
        try:
            await self.request("POST", "/end_pipeline_execution", body=body)
        except WatcherError as error:
            if not self._spool_raw(error, "end", "/end_pipeline_execution", body):
                raise

    async def get_execution(self, execution_id: int) -> Execution:
        return cast(Execution, await self.request("GET", f"/pipeline_execution/{execution_id}"))

    async def list_executions(self, **filters: Unpack[ExecutionFilter]) -> list[Execution]:
        """Executions, newest first; filter by pipeline_id, status, since (paged)."""
        return cast(
            list[Execution], await self.request("GET", "/pipeline_execution", params=filters)
        )

    # -- addresses and lineage -------------------------------------------------------------

    async def create_address_type(self, name: str, group_name: str) -> AddressType:
        return cast(
            AddressType,
            await self.request(
                "POST", "/address_type", body={"name": name, "group_name": group_name}
            ),
        )

    async def list_address_types(
        self, limit: int | None = None, offset: int | None = None
    ) -> list[AddressType]:
        return cast(
            list[AddressType],
            await self.request("GET", "/address_type", params={"limit": limit, "offset": offset}),
        )

    async def get_address_type(self, address_type_id: int) -> AddressType:
        return cast(AddressType, await self.request("GET", f"/address_type/{address_type_id}"))

    async def update_address_type(self, id_or_name: int | str, **fields: Any) -> AddressType:
        return cast(
            AddressType,
            await self.request("PATCH", "/address_type", body={**_key(id_or_name), **fields}),
        )

    async def create_address(self, address: Address) -> StoredAddress:
        return cast(StoredAddress, await self.request("POST", "/address", body=address))

    async def list_addresses(
        self, limit: int | None = None, offset: int | None = None
    ) -> list[StoredAddress]:
        return cast(
            list[StoredAddress],
            await self.request("GET", "/address", params={"limit": limit, "offset": offset}),
        )

    async def get_address(self, address_id: int) -> StoredAddress:
        return cast(StoredAddress, await self.request("GET", f"/address/{address_id}"))

    async def update_address(self, id_or_name: int | str, **fields: Any) -> StoredAddress:
        return cast(
            StoredAddress,
            await self.request("PATCH", "/address", body={**_key(id_or_name), **fields}),
        )

    async def create_lineage(
        self, pipeline_id: int, sources: Sequence[Address], targets: Sequence[Address]
    ) -> LineageCreated:
        """Replace the pipeline's edges with sources x targets (no-op once load_lineage is off)."""
        body = {
            "pipeline_id": pipeline_id,
            "source_addresses": list(sources),
            "target_addresses": list(targets),
        }
        return cast(LineageCreated, await self.request("POST", "/address_lineage", body=body))

    async def get_lineage(self, address_id: int, depth: int | None = None) -> LineageGraph:
        return cast(
            LineageGraph,
            await self.request("GET", f"/address_lineage/{address_id}", params={"depth": depth}),
        )

    async def get_lineage_graph(self, source_address_id: int) -> NodeGraph:
        """The original Watcher's lineage graph around an address: nodes and edges."""
        return cast(
            NodeGraph,
            await self.request(
                "GET", "/lineage-graph/", params={"source_address_id": source_address_id}
            ),
        )

    async def refresh_lineage_graph(self) -> JSON:
        """The original's refresh: a no-op in Watcher (the graph is always current)."""
        return cast(JSON, await self.request("POST", "/lineage-graph/refresh"))

    # -- anomaly detection -----------------------------------------------------------------

    async def create_anomaly_rule(
        self, pipeline_id: int, metric_field: str, **fields: Unpack[AnomalyRuleFields]
    ) -> AnomalyRule:
        body = {"pipeline_id": pipeline_id, "metric_field": metric_field, **fields}
        return cast(AnomalyRule, await self.request("POST", "/anomaly_detection_rule", body=body))

    async def list_anomaly_rules(
        self,
        pipeline_id: int | None = None,
        *,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[AnomalyRule]:
        """Rules by id, optionally only those of one pipeline."""
        params = {"pipeline_id": pipeline_id, "limit": limit, "offset": offset}
        return cast(
            list[AnomalyRule],
            await self.request("GET", "/anomaly_detection_rule", params=params),
        )

    async def get_anomaly_rule(self, rule_id: int) -> AnomalyRule:
        return cast(AnomalyRule, await self.request("GET", f"/anomaly_detection_rule/{rule_id}"))

    async def update_anomaly_rule(
        self, rule_id: int, **fields: Unpack[AnomalyRuleFields]
    ) -> AnomalyRule:
        return cast(
            AnomalyRule,
            await self.request("PATCH", "/anomaly_detection_rule", body={"id": rule_id, **fields}),
        )

    async def detect_anomalies(self, pipeline_id: int) -> Detection:
        """Judge the pipeline's latest successful execution now, against every active rule."""
        return cast(
            Detection, await self.request("POST", f"/anomaly_detection/detect/{pipeline_id}")
        )

    async def unflag_anomaly(
        self,
        pipeline_execution_id: int,
        metric_fields: Sequence[str],
        *,
        pipeline_id: int | None = None,
    ) -> None:
        """Clear an execution's anomaly flags for these metrics: it counts in baselines again."""
        body = _http.compact(
            pipeline_execution_id=pipeline_execution_id,
            metric_field=list(metric_fields),
            pipeline_id=pipeline_id,
        )
        await self.request("POST", "/unflag_anomaly", body=body)

    # -- checks and maintenance ------------------------------------------------------------

    async def check_timeliness(self, lookback_minutes: int = 60) -> TimelinessCheck:
        body = {"lookback_minutes": lookback_minutes}
        return cast(TimelinessCheck, await self.request("POST", "/timeliness", body=body))

    async def check_freshness(self) -> FreshnessCheck:
        return cast(FreshnessCheck, await self.request("POST", "/freshness", body={}))

    async def check_missed_runs(self) -> MissedRunsCheck:
        return cast(MissedRunsCheck, await self.request("POST", "/missed_runs"))

    # -- learned expectations --------------------------------------------------------------

    async def get_expectations(self, pipeline_id: int) -> JSON:
        """What was learned for the pipeline, or how much history learning still needs."""
        return cast(JSON, await self.request("GET", f"/pipeline/{pipeline_id}/expectations"))

    async def update_expectations(
        self, pipeline_id: int, **settings: Unpack[ExpectationSettings]
    ) -> JSON:
        """Set the pipeline's sensitivity (None inherits) or opt it out of learning."""
        path = f"/pipeline/{pipeline_id}/expectations"
        return cast(JSON, await self.request("PATCH", path, body=dict(settings)))

    async def update_type_expectations(
        self, pipeline_type_id: int, **settings: Unpack[ExpectationSettings]
    ) -> JSON:
        """Set a pipeline type's default sensitivity or opt its pipelines out."""
        path = f"/pipeline_type/{pipeline_type_id}/expectations"
        return cast(JSON, await self.request("PATCH", path, body=dict(settings)))

    async def expectation_feedback(
        self, pipeline_id: int, pipeline_execution_id: int, verdict: str = "fine"
    ) -> JSON:
        """Mark a run "fine" (train on it though flagged) or "excluded" (never train on it)."""
        body = {"pipeline_execution_id": pipeline_execution_id, "verdict": verdict}
        path = f"/pipeline/{pipeline_id}/expectations/feedback"
        return cast(JSON, await self.request("POST", path, body=body))

    async def retrain_expectations(self, pipeline_id: int) -> JSON:
        """A new normal: forget the pipeline's history before now and learn again."""
        path = f"/pipeline/{pipeline_id}/expectations/retrain"
        return cast(JSON, await self.request("POST", path))

    async def learn_expectations(self) -> JSON:
        """Run the learn job now (pipelines with runs newer than their expectations)."""
        return cast(JSON, await self.request("POST", "/expectations/learn"))

    async def check_expectations(self, lookback_minutes: int = 60) -> JSON:
        """Run the learned check now: late, overdue, stale and anomalous against what was learned."""
        body = {"lookback_minutes": lookback_minutes}
        return cast(JSON, await self.request("POST", "/expectations/check", body=body))

    async def create_maintenance_window(
        self,
        start_date: datetime,
        end_date: datetime,
        reason: str,
        *,
        pipeline_id: int | None = None,
        pipeline_type_id: int | None = None,
    ) -> JSON:
        """Declare a maintenance window for a pipeline, a pipeline type or (neither) every
        pipeline: its runs are not learned from and nothing learned alerts during it."""
        body = _http.compact(
            start_date=start_date.isoformat(),
            end_date=end_date.isoformat(),
            reason=reason,
            pipeline_id=pipeline_id,
            pipeline_type_id=pipeline_type_id,
        )
        return cast(JSON, await self.request("POST", "/maintenance_window", body=body))

    async def list_maintenance_windows(
        self, pipeline_id: int | None = None, limit: int = 100, offset: int = 0
    ) -> JSON:
        """Maintenance windows, latest first; with pipeline_id, those that apply to it."""
        params = _http.compact(pipeline_id=pipeline_id, limit=limit, offset=offset)
        return cast(JSON, await self.request("GET", "/maintenance_window", params=params))

    async def get_maintenance_window(self, window_id: int) -> JSON:
        """One maintenance window."""
        return cast(JSON, await self.request("GET", f"/maintenance_window/{window_id}"))

    async def delete_maintenance_window(self, window_id: int) -> None:
        """Delete a maintenance window (its pipelines relearn with its runs again)."""
        await self.request("DELETE", f"/maintenance_window/{window_id}")

    async def get_upstream(self, pipeline_id: int, depth: int | None = None) -> JSON:
        """Pipelines upstream of this one (lineage and nesting), each with its depth."""
        params = _http.compact(depth=depth)
        path = f"/pipeline/{pipeline_id}/upstream"
        return cast(JSON, await self.request("GET", path, params=params))

    async def get_downstream(self, pipeline_id: int, depth: int | None = None) -> JSON:
        """Pipelines downstream of this one (lineage and nesting), each with its depth."""
        params = _http.compact(depth=depth)
        path = f"/pipeline/{pipeline_id}/downstream"
        return cast(JSON, await self.request("GET", path, params=params))

    async def list_incidents(self, recent_hours: int = 24, limit: int = 100) -> JSON:
        """Open incidents and those resolved in the last recent_hours, newest first."""
        params = {"recent_hours": recent_hours, "limit": limit}
        return cast(JSON, await self.request("GET", "/incidents", params=params))

    async def get_incident(self, incident_id: int) -> JSON:
        """One incident: its root, problem, start and impacted pipelines and addresses."""
        return cast(JSON, await self.request("GET", f"/incidents/{incident_id}"))

    async def acknowledge_incident(self, incident_id: int, by: str | None = None) -> JSON:
        """Record who acknowledged the incident (default: the token's name); 409 if it was."""
        path = f"/incidents/{incident_id}/acknowledge"
        return cast(JSON, await self.request("POST", path, body=_http.compact(by=by)))

    async def evaluate_incidents(self) -> JSON:
        """Run the incident engine now (open, attach, resolve, promote)."""
        return cast(JSON, await self.request("POST", "/incidents/evaluate"))

    async def cleanup_logs(
        self, retention_days: int, batch_size: int | None = None, *, dry_run: bool = False
    ) -> Cleanup:
        """Delete history older than retention_days (≥ 90); dry_run counts without deleting."""
        body = _http.compact(retention_days=retention_days, batch_size=batch_size)
        if dry_run:
            body["dry_run"] = True
        return cast(Cleanup, await self.request("POST", "/log_cleanup", body=body))

    # -- OpenLineage -----------------------------------------------------------------------

    async def send_lineage_event(self, event: Mapping[str, Any]) -> LineageEventResult:
        """Ingest one OpenLineage RunEvent, JobEvent or DatasetEvent (a JSON object)."""
        return cast(LineageEventResult, await self.request("POST", "/api/v1/lineage", body=event))

    async def send_lineage_batch(self, events: Sequence[Mapping[str, Any]]) -> LineageBatchResult:
        """Ingest events one by one; rejected ones are reported (`rejected`), not raised."""
        try:
            result = await self.request("POST", "/api/v1/lineage/batch", body=list(events))
        except ValidationError as error:
            result = _http.partial_batch(error)
        return cast(LineageBatchResult, result)


def _key(id_or_name: int | str) -> dict[str, int | str]:
    return {"id": id_or_name} if isinstance(id_or_name, int) else {"name": id_or_name}
