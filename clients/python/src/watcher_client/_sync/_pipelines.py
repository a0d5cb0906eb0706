# Generated from _async/_pipelines.py by scripts/unasync.py: edit that file, then run the script.
"""Pipeline types, pipelines and their executions: the routes a tracked run uses."""

from __future__ import annotations

from datetime import datetime
from typing import Unpack, cast
from uuid import uuid4

from watcher_client import _http
from watcher_client._errors import Spooled, WatcherError
from watcher_client._models import (
    JSON,
    Created,
    Execution,
    ExecutionFilter,
    Pipeline,
    PipelineFields,
    PipelineSync,
    PipelineType,
    PipelineTypeFields,
    PipelineUpdate,
    Watermark,
)
from watcher_client._sync._core import Core, key


class PipelineRoutes(Core):
    # -- pipeline types --------------------------------------------------------------------

    def create_pipeline_type(self, name: str, **fields: Unpack[PipelineTypeFields]) -> PipelineType:
        """Create-or-get by name (case-insensitive)."""
        return cast(
            PipelineType,
            self.request("POST", "/pipeline_type", body={"name": name, **fields}),
        )

    def list_pipeline_types(
        self, limit: int | None = None, offset: int | None = None
    ) -> list[PipelineType]:
        return cast(
            list[PipelineType],
            self.request("GET", "/pipeline_type", params={"limit": limit, "offset": offset}),
        )

    def get_pipeline_type(self, pipeline_type_id: int) -> PipelineType:
        return cast(PipelineType, self.request("GET", f"/pipeline_type/{pipeline_type_id}"))

    def update_pipeline_type(
        self, id_or_name: int | str, **fields: Unpack[PipelineTypeFields]
    ) -> PipelineType:
        return cast(
            PipelineType,
            self.request("PATCH", "/pipeline_type", body={**key(id_or_name), **fields}),
        )

    # -- pipelines -------------------------------------------------------------------------

    def create_pipeline(
        self, name: str, pipeline_type_name: str, **fields: Unpack[PipelineFields]
    ) -> PipelineSync:
        """Create-or-get by name; updates changed config. `watermark` is the one to start from."""
        body = _http.pipeline_body(name, pipeline_type_name, dict(fields))
        return cast(PipelineSync, self.request("POST", "/pipeline", body=body))

    def list_pipelines(self, limit: int | None = None, offset: int | None = None) -> list[Pipeline]:
        return cast(
            list[Pipeline],
            self.request("GET", "/pipeline", params={"limit": limit, "offset": offset}),
        )

    def get_pipeline(self, pipeline_id: int) -> Pipeline:
        return cast(Pipeline, self.request("GET", f"/pipeline/{pipeline_id}"))

    def update_pipeline(self, id_or_name: int | str, **fields: Unpack[PipelineUpdate]) -> Pipeline:
        body = _http.watermarks_as_text({**key(id_or_name), **fields})
        return cast(Pipeline, self.request("PATCH", "/pipeline", body=body))

    # -- executions ------------------------------------------------------------------------

    def start_execution(
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
            return cast(Created, self.request("POST", path, body=body))
        except WatcherError as error:
            if self._spool_raw(error, "start", path, body):
                raise Spooled(f"start spooled after: {error}", body["run_id"]) from error
            raise

    def end_execution(
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
            self.request("POST", "/end_pipeline_execution", body=body)
        except WatcherError as error:
            if not self._spool_raw(error, "end", "/end_pipeline_execution", body):
                raise

    def get_execution(self, execution_id: int) -> Execution:
        return cast(Execution, self.request("GET", f"/pipeline_execution/{execution_id}"))

    def list_executions(self, **filters: Unpack[ExecutionFilter]) -> list[Execution]:
        """Executions, newest first; filter by pipeline_id, status, since (paged)."""
        return cast(list[Execution], self.request("GET", "/pipeline_execution", params=filters))
