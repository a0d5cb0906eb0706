"""Anomaly detection's request and response bodies: rules per (pipeline, metric), results."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field

from watcher import crud
from watcher.checks.learned.judge import LoggedLearnedFinding
from watcher.db.schema import ANOMALY_METRICS
from watcher.fields import Body, Id, MetricField, Row


def _known_metric(value: str) -> str:
    if value not in ANOMALY_METRICS:
        raise ValueError(f"must be one of {', '.join(ANOMALY_METRICS)}")
    return value


Metric = Annotated[MetricField, AfterValidator(_known_metric)]
ZThreshold = Annotated[float, Field(ge=1, le=10)]
LookbackDays = Annotated[int, Field(ge=1, le=365)]
MinimumExecutions = Annotated[int, Field(ge=5, le=1000)]


class RuleCreate(Body):
    pipeline_id: Id
    metric_field: Metric
    z_threshold: ZThreshold = 3.0
    lookback_days: LookbackDays = 30
    minimum_executions: MinimumExecutions = 30
    active: bool = True


class RulePatch(Body):
    """Every field but `id` optional. `pipeline_id` and `metric_field` move the rule, as the
    original Watcher's PATCH does (its results stay with the rule)."""

    id: Id
    pipeline_id: Id | None = None
    metric_field: Metric | None = None
    z_threshold: ZThreshold | None = None
    lookback_days: LookbackDays | None = None
    minimum_executions: MinimumExecutions | None = None
    active: bool | None = None


class RuleQuery(crud.Page):
    pipeline_id: Id | None = None


class Unflag(Body):
    pipeline_id: Id | None = None
    pipeline_execution_id: Id
    metric_field: Annotated[list[Metric], Field(min_length=1, max_length=len(ANOMALY_METRICS))]


class Rule(Row):
    id: int
    pipeline_id: int
    metric_field: str
    z_threshold: float
    lookback_days: int
    minimum_executions: int
    active: bool
    created_at: datetime
    updated_at: datetime


class DetectionResult(Row):
    """An `anomaly_detection_result` row with its rule's metric."""

    id: int
    pipeline_execution_id: int
    rule_id: int
    metric_field: str
    violation_value: float
    z_score: float
    historical_mean: float
    std_deviation_value: float
    z_threshold: float
    threshold_min_value: float
    threshold_max_value: float
    baseline_count: int
    is_anomaly: bool
    context: dict[str, Any] | None
    detected_at: datetime


class Detection(BaseModel):
    pipeline_id: int
    pipeline_execution_id: int
    new_results: int
    anomalies: int
    results: list[DetectionResult]
    # The execution's metrics outside their learned band (metrics without an active rule).
    learned_findings: list[LoggedLearnedFinding] = []
