"""Shapes the client sends and receives. Plain dicts at runtime, typed for the reader.

Response shapes are `total=False`: the server may add fields, and a client that is older
than the server must keep working.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal, NotRequired, TypedDict

# Stored as text by Watcher: ints and dates are sent as their text form (ISO 8601 for dates).
Watermark = str | int | date | datetime
JSON = dict[str, Any]


class Address(TypedDict):
    """A source or target of lineage; a `database` group name `db.schema.table` fills the parts."""

    name: str
    address_type_name: str
    address_type_group_name: str
    database_name: NotRequired[str | None]
    schema_name: NotRequired[str | None]
    table_name: NotRequired[str | None]
    primary_key: NotRequired[str | None]
    address_metadata: NotRequired[JSON | None]


class RuleFields(TypedDict, total=False):
    freshness_number: int | None
    freshness_datepart: str | None
    timeliness_number: int | None
    timeliness_datepart: str | None
    mute_freshness_check: bool
    mute_timeliness_check: bool
    schedule: str | None
    schedule_timezone: str | None
    schedule_grace_seconds: int | None


class PipelineTypeFields(RuleFields, total=False):
    group_name: str | None


class PipelineConfig(RuleFields, total=False):
    pipeline_metadata: JSON | None


class PipelineFields(PipelineConfig, total=False):
    next_watermark: Watermark | None


class PipelineUpdate(PipelineFields, total=False):
    pipeline_type_name: str
    watermark: Watermark | None
    active: bool
    load_lineage: bool


class ExecutionFilter(TypedDict, total=False):
    pipeline_id: int
    status: str  # running | succeeded | failed
    since: datetime
    limit: int
    offset: int


class AnomalyRuleFields(TypedDict, total=False):
    z_threshold: float
    lookback_days: int
    minimum_executions: int
    active: bool


class Heartbeat(TypedDict):
    status: str


class Created(TypedDict):
    id: int


class PipelineSync(TypedDict):
    """`POST /pipeline`: `watermark` is the stored watermark this run should start from."""

    id: int
    active: bool
    load_lineage: bool
    watermark: str | None


class _Rules(TypedDict, total=False):
    id: int
    name: str
    freshness_number: int | None
    freshness_datepart: str | None
    timeliness_number: int | None
    timeliness_datepart: str | None
    mute_freshness_check: bool
    mute_timeliness_check: bool
    schedule: str | None
    schedule_timezone: str | None
    schedule_grace_seconds: int | None
    created_at: str
    updated_at: str


class PipelineType(_Rules, total=False):
    group_name: str | None


class Pipeline(_Rules, total=False):
    pipeline_type_id: int
    pipeline_type_name: str
    watermark: str | None
    next_watermark: str | None
    pipeline_metadata: JSON | None
    last_target_insert: str | None
    last_target_update: str | None
    last_target_soft_delete: str | None
    load_lineage: bool
    active: bool


class Execution(TypedDict, total=False):
    id: int
    pipeline_id: int
    pipeline_name: str
    parent_id: int | None
    run_id: str | None
    start_date: str
    end_date: str | None
    duration_seconds: float | None
    completed_successfully: bool | None
    inserts: int | None
    updates: int | None
    soft_deletes: int | None
    total_rows: int | None
    throughput: float | None
    watermark: str | None
    next_watermark: str | None
    execution_metadata: JSON | None
    anomaly_flags: JSON | None
    children: list[Execution]
    child_executions: list[Execution]  # the original Watcher's list, its item shape


class LineageCreated(TypedDict):
    pipeline_id: int
    lineage_relationships_created: int
    message: str


class Related(TypedDict):
    address_id: int
    address_name: str
    address_type_name: str
    address_type_group_name: str
    depth: int


class LineageGraph(TypedDict):
    address_id: int
    address_name: str
    upstream: list[Related]
    downstream: list[Related]


class NodeGraph(TypedDict):
    """`GET /lineage-graph/`: the original Watcher's graph around an address."""

    nodes: list[JSON]
    edges: list[JSON]


class AddressType(TypedDict, total=False):
    id: int
    name: str
    group_name: str


class StoredAddress(TypedDict, total=False):
    id: int
    name: str
    address_type_id: int
    database_name: str | None
    schema_name: str | None
    table_name: str | None
    primary_key: str | None
    address_metadata: JSON | None


class AnomalyRule(TypedDict, total=False):
    id: int
    pipeline_id: int
    metric_field: str
    z_threshold: float
    lookback_days: int
    minimum_executions: int
    active: bool


class AnomalyResult(TypedDict, total=False):
    """One rule's verdict on one execution (`anomaly_detection_result`)."""

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
    context: JSON | None
    detected_at: str


class Detection(TypedDict, total=False):
    """`POST /anomaly_detection/detect/{pipeline_id}`: the latest successful execution judged."""

    pipeline_id: int
    pipeline_execution_id: int
    new_results: int
    anomalies: int
    results: list[AnomalyResult]


class _Check(TypedDict, total=False):
    status: str
    evaluated_at: str
    new_findings: int


class OverdueExecution(TypedDict, total=False):
    pipeline_execution_id: int
    pipeline_id: int
    pipeline_name: str
    start_date: str
    execution_status: str  # running | completed
    duration_seconds: float
    seconds_threshold: float
    timely_number: int
    timely_datepart: str
    used_child_config: bool
    newly_logged: bool


class TimelinessCheck(_Check, total=False):
    lookback_minutes: int
    executions_checked: int
    findings: list[OverdueExecution]


class StalePipeline(TypedDict, total=False):
    pipeline_id: int
    pipeline_name: str
    last_dml_timestamp: str
    deadline: str
    lag_seconds: float
    threshold_seconds: float
    freshness_number: int
    freshness_datepart: str
    used_child_config: bool
    newly_logged: bool


class FreshnessCheck(_Check, total=False):
    pipelines_checked: int
    findings: list[StalePipeline]


class MissedRun(TypedDict, total=False):
    pipeline_id: int
    pipeline_name: str
    expected_at: str
    last_start: str | None
    schedule: str
    schedule_timezone: str
    grace_seconds: int
    used_child_config: bool
    newly_logged: bool


class MissedRunsCheck(_Check, total=False):
    pipelines_checked: int
    findings: list[MissedRun]


class Cleanup(TypedDict, total=False):
    """`POST /log_cleanup`: rows deleted per table, or with dry_run the rows that would be."""

    status: str  # completed | dry_run
    dry_run: bool
    retention_days: int
    cutoff: str
    deleted: dict[str, int]
    would_delete: dict[str, int]


class LineageEventResult(TypedDict, total=False):
    """`POST /api/v1/lineage`: what one OpenLineage event was recorded as."""

    event_type: str  # START, RUNNING, COMPLETE, FAIL, ABORT, OTHER, JOB or DATASET
    status: str  # recorded | ended | ignored (a run that had already ended)
    pipeline_id: int
    execution_id: int  # run events
    address_id: int  # dataset events


class LineageBatchItem(LineageEventResult, total=False):
    index: int
    status_code: int  # 201, or the 4xx that event alone would have been answered with
    detail: str
    errors: list[JSON]


class LineageBatchResult(TypedDict):
    """`POST /api/v1/lineage/batch`: each event on its own; rejected ones carry the reason."""

    accepted: int
    rejected: int
    results: list[LineageBatchItem]


class ExpectationSettings(TypedDict, total=False):
    """Learning settings of a pipeline or type; sensitivity None inherits (type, then medium)."""

    sensitivity: Literal["low", "medium", "high"] | None
    opted_out: bool
