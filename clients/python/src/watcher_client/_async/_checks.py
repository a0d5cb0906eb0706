"""Anomaly rules, the checks, learned expectations, maintenance windows, incidents and log
cleanup."""

# The source of _sync/: scripts/unasync.py generates it (its --check runs in `make lint`).

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Unpack, cast

from watcher_client import _http
from watcher_client._async._core import Core
from watcher_client._models import (
    JSON,
    AnomalyRule,
    AnomalyRuleFields,
    Cleanup,
    Detection,
    ExpectationSettings,
    FreshnessCheck,
    MissedRunsCheck,
    TimelinessCheck,
)


class CheckRoutes(Core):
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

    # -- maintenance windows ---------------------------------------------------------------

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

    # -- incidents and log cleanup ---------------------------------------------------------

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
