"""Generate Watcher's Grafana dashboards (grafana/dashboards/*.json) from code.

    .venv/bin/python grafana/generate.py          # rewrite the JSON files
    .venv/bin/python grafana/generate.py --check  # exit 1 if the files are out of date

Dashboards are source: panels are declared here once, written as plain Grafana JSON (schema
39, provisioned read-only), and `tests/test_monitoring_config.py` checks that the files match
this generator, that uids are stable and unique, and that every panel has a datasource and
targets. `tests/test_stack_e2e.py` runs every Prometheus query against a real Prometheus
scraping a seeded Watcher, and every SQL query against PostgreSQL.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DASHBOARDS_DIR = Path(__file__).resolve().parent / "dashboards"
PROMETHEUS = {"type": "prometheus", "uid": "watcher-prometheus"}
POSTGRES = {"type": "postgres", "uid": "watcher-postgres"}
SCHEMA_VERSION = 39

# Label filters shared by the pipeline dashboards; the variables default to "All" (.*).
PIPE = 'pipeline_type=~"$pipeline_type", pipeline=~"$pipeline"'
TYPE = 'pipeline_type=~"$pipeline_type"'
RI = "$__rate_interval"


def one(expr: str, *labels: str, agg: str = "max") -> str:
    """`expr` once per pipeline (and `labels`), across replicas.

    Every replica exports the same watcher_pipeline_* series from its own snapshot, so a
    panel that counts, sums or joins them must aggregate the instances away first, as the
    alert rules do (monitoring/rules/pipelines.yml).
    """
    return f"{agg} by ({', '.join(('pipeline', 'pipeline_type', *labels))}) ({expr})"


@dataclass
class Panel:
    title: str
    targets: list[tuple[str, str]]  # (expr or SQL, legend)
    kind: str = "timeseries"
    unit: str = "short"
    width: int = 12
    height: int = 8
    description: str = ""
    instant: bool = False
    sql: bool = False
    overrides: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Dashboard:
    uid: str
    title: str
    description: str
    panels: list[Panel | str]  # a str starts a new row
    variables: list[dict[str, Any]] = field(default_factory=list)
    time_from: str = "now-6h"
    tags: tuple[str, ...] = ("watcher",)


def _target(index: int, query: str, legend: str, panel: Panel) -> dict[str, Any]:
    ref = chr(ord("A") + index)
    if panel.kind == "nodeGraph":
        ref = legend  # the node graph takes the frames named (refId) "nodes" and "edges"
    if panel.sql:
        fmt = "table" if panel.kind in ("table", "nodeGraph") else "time_series"
        return {
            "refId": ref,
            "datasource": POSTGRES,
            "editorMode": "code",
            "format": fmt,
            "rawQuery": True,
            "rawSql": query,
        }
    target: dict[str, Any] = {
        "refId": ref,
        "datasource": PROMETHEUS,
        "editorMode": "code",
        "expr": query,
        "legendFormat": legend or "__auto",
        "range": not panel.instant,
        "instant": panel.instant,
    }
    if panel.kind == "table":
        target["format"] = "table"
    return target


def _panel(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": POSTGRES if panel.sql else PROMETHEUS,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "targets": [_target(i, q, legend, panel) for i, (q, legend) in enumerate(panel.targets)],
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": panel.overrides},
        "options": {},
    }
    if panel.kind == "timeseries":
        body["options"] = {
            "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    elif panel.kind == "stat":
        body["options"] = {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "value"}
    elif panel.kind == "nodeGraph":
        body["options"] = {"nodes": {}, "edges": {}}
    elif panel.kind == "table":
        body["options"] = {"showHeader": True}
        body["transformations"] = [{"id": "merge", "options": {}}] if not panel.sql else []
    return body


def _query_variable(name: str, label: str, query: str, *, sql: bool = False) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": POSTGRES if sql else PROMETHEUS,
        "query": query if sql else {"query": query, "refId": f"{name}-variable"},
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": None if sql else ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


def render(dashboard: Dashboard) -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    x = y = row_height = 0
    next_id = 1
    for item in dashboard.panels:
        if isinstance(item, str):
            y += row_height
            x = row_height = 0
            panels.append(
                {
                    "id": next_id,
                    "type": "row",
                    "title": item,
                    "collapsed": False,
                    "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                    "panels": [],
                }
            )
            next_id += 1
            y += 1
            continue
        if x + item.width > 24:
            y += row_height
            x = row_height = 0
        panels.append(_panel(item, next_id, x, y))
        next_id += 1
        x += item.width
        row_height = max(row_height, item.height)
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": list(dashboard.tags),
        "editable": False,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": "30s",
        "time": {"from": dashboard.time_from, "to": "now"},
        "timezone": "utc",
        "templating": {"list": dashboard.variables},
        "annotations": {"list": []},
        "links": [
            {"type": "dashboards", "tags": ["watcher"], "asDropdown": True, "title": "Watcher"}
        ],
        "panels": panels,
    }


def _pipeline_variables(with_metric: bool = False) -> list[dict[str, Any]]:
    variables = [
        _query_variable(
            "pipeline_type", "Pipeline type", "label_values(watcher_pipeline_active, pipeline_type)"
        ),
        _query_variable(
            "pipeline",
            "Pipeline",
            'label_values(watcher_pipeline_active{pipeline_type=~"$pipeline_type"}, pipeline)',
        ),
    ]
    if with_metric:
        variables.append(
            _query_variable(
                "metric", "Metric", "label_values(watcher_pipeline_anomaly_z_threshold, metric)"
            )
        )
    return variables


def overview() -> Dashboard:
    return Dashboard(
        uid="watcher-pipeline-overview",
        title="Watcher / Pipeline overview",
        description="Executions, error rate, duration, throughput and DML per pipeline type "
        "and pipeline.",
        variables=_pipeline_variables(),
        panels=[
            "Now",
            Panel(
                "Active pipelines",
                [(f"count({one(f'watcher_pipeline_active{{{PIPE}}}')})", "")],
                kind="stat",
                width=6,
                height=4,
            ),
            Panel(
                "Running executions",
                [(f"sum({one(f'watcher_pipeline_running_executions{{{PIPE}}}')})", "")],
                kind="stat",
                width=6,
                height=4,
            ),
            Panel(
                "Pipelines whose last execution failed",
                [
                    (
                        f"count({one(f'watcher_pipeline_last_execution_success{{{PIPE}}}', agg='min')}"
                        " == 0) or vector(0)",
                        "",
                    )
                ],
                kind="stat",
                width=6,
                height=4,
            ),
            Panel(
                "Inactive pipelines",
                [('max(watcher_pipelines{status="inactive"})', "")],
                kind="stat",
                width=6,
                height=4,
            ),
            "Executions (the selected pipelines, by pipeline type)",
            Panel(
                "Executions finished",
                [
                    (
                        f"sum by (pipeline_type, status) "
                        f"(rate(watcher_executions_finished_total{{{PIPE}}}[{RI}]))",
                        "{{pipeline_type}} {{status}}",
                    )
                ],
                unit="ops",
            ),
            Panel(
                "Error rate",
                [
                    (
                        f'(sum by (pipeline_type) (rate(watcher_executions_finished_total{{{PIPE}, status="failure"}}[{RI}]))'
                        f" or 0 * sum by (pipeline_type) (rate(watcher_executions_finished_total{{{PIPE}}}[{RI}])))"
                        f" / sum by (pipeline_type) (rate(watcher_executions_finished_total{{{PIPE}}}[{RI}]))",
                        "{{pipeline_type}}",
                    )
                ],
                unit="percentunit",
                description="Failed / ended executions; empty while nothing ends.",
            ),
            Panel(
                "Execution duration percentiles",
                [
                    (
                        f"histogram_quantile({q}, sum by (pipeline_type, le) "
                        f"(rate(watcher_execution_duration_seconds_bucket{{{TYPE}}}[{RI}])))",
                        f"{{{{pipeline_type}}}} p{int(q * 100)}",
                    )
                    for q in (0.5, 0.95, 0.99)
                ],
                unit="s",
                description="By pipeline type only: the histogram has no pipeline label (a dozen "
                "buckets per pipeline would multiply the series). One pipeline's durations: "
                "Last execution duration below.",
            ),
            Panel(
                "Executions started",
                [
                    (
                        f"sum by (pipeline_type) "
                        f"(rate(watcher_executions_started_total{{{PIPE}}}[{RI}]))",
                        "{{pipeline_type}}",
                    )
                ],
                unit="ops",
            ),
            Panel(
                "DML rows by operation",
                [
                    (
                        f"sum by (operation) (rate(watcher_execution_rows_total{{{PIPE}}}[{RI}]))",
                        "{{operation}}",
                    )
                ],
                unit="short",
                description="Rows per second reported by ended executions.",
            ),
            Panel(
                "Mean execution duration",
                [
                    (
                        f"sum by (pipeline_type) (rate(watcher_execution_duration_seconds_sum{{{TYPE}}}[{RI}]))"
                        f" / sum by (pipeline_type) (rate(watcher_execution_duration_seconds_count{{{TYPE}}}[{RI}]))",
                        "{{pipeline_type}}",
                    )
                ],
                unit="s",
                description="By pipeline type only, like the percentiles.",
            ),
            "Per pipeline (latest ended execution)",
            Panel(
                "Last execution duration",
                [
                    (
                        one(f"watcher_pipeline_last_execution_duration_seconds{{{PIPE}}}"),
                        "{{pipeline}}",
                    )
                ],
                unit="s",
            ),
            Panel(
                "Last execution throughput",
                [
                    (
                        one(
                            f"watcher_pipeline_last_execution_throughput_rows_per_second{{{PIPE}}}"
                        ),
                        "{{pipeline}}",
                    )
                ],
                unit="short",
                description="Total rows per second of the latest ended execution.",
            ),
            Panel(
                "Last execution rows",
                [
                    (
                        one(f"watcher_pipeline_last_execution_rows{{{PIPE}}}", "operation"),
                        "{{pipeline}} {{operation}}",
                    )
                ],
            ),
            Panel(
                "Watermarks",
                [
                    (one(f"watcher_pipeline_watermark{{{PIPE}}}"), "{{pipeline}}"),
                    (
                        one(f"watcher_pipeline_watermark_timestamp_seconds{{{PIPE}}}") + " * 1000",
                        "{{pipeline}} (time)",
                    ),
                ],
                description="Stored watermarks that are numbers, or dates (as epoch ms).",
            ),
            Panel(
                "Pipelines",
                [
                    (
                        one(f"watcher_pipeline_last_execution_success{{{PIPE}}}", agg="min"),
                        "success",
                    ),
                    (
                        one(f"watcher_pipeline_last_execution_duration_seconds{{{PIPE}}}"),
                        "duration",
                    ),
                    (
                        one(f"watcher_pipeline_last_execution_end_timestamp_seconds{{{PIPE}}}")
                        + " * 1000",
                        "ended",
                    ),
                    (one(f"watcher_pipeline_running_executions{{{PIPE}}}"), "running"),
                ],
                kind="table",
                width=24,
                instant=True,
            ),
        ],
    )


def freshness_timeliness() -> Dashboard:
    return Dashboard(
        uid="watcher-freshness-timeliness",
        title="Watcher / Freshness & timeliness",
        description="Time since last DML against freshness rules; running and finished "
        "executions against timeliness rules; violations and missed runs.",
        variables=_pipeline_variables(),
        panels=[
            "Freshness",
            Panel(
                "Stale pipelines",
                [
                    (
                        f"count(pipeline:watcher_freshness_lag_ratio{{{PIPE}}} > 1) or vector(0)",
                        "",
                    )
                ],
                kind="stat",
                width=6,
            ),
            Panel(
                "Freshness lag / threshold",
                [(f"pipeline:watcher_freshness_lag_ratio{{{PIPE}}}", "{{pipeline}}")],
                unit="percentunit",
                width=18,
                description="Above 100% the pipeline is stale (WatcherPipelineNotFresh).",
            ),
            Panel(
                "Freshness lag vs threshold",
                [
                    (one(f"watcher_pipeline_freshness_lag_seconds{{{PIPE}}}"), "{{pipeline}} lag"),
                    (
                        one(
                            f"watcher_pipeline_freshness_threshold_seconds{{{PIPE}}}", "rule_source"
                        ),
                        "{{pipeline}} threshold ({{rule_source}})",
                    ),
                ],
                unit="s",
            ),
            Panel(
                "Last DML",
                [
                    (
                        one(f"watcher_pipeline_last_dml_timestamp_seconds{{{PIPE}}}") + " * 1000",
                        "{{pipeline}}",
                    )
                ],
                kind="table",
                instant=True,
                unit="dateTimeAsIso",
            ),
            "Timeliness",
            Panel(
                "Oldest running execution vs threshold",
                [
                    (
                        one(f"watcher_pipeline_oldest_running_execution_age_seconds{{{PIPE}}}"),
                        "{{pipeline}} running for",
                    ),
                    (
                        one(
                            f"watcher_pipeline_timeliness_threshold_seconds{{{PIPE}}}",
                            "rule_source",
                        ),
                        "{{pipeline}} threshold ({{rule_source}})",
                    ),
                ],
                unit="s",
            ),
            Panel(
                "Last execution duration vs threshold",
                [
                    (
                        one(f"watcher_pipeline_last_execution_duration_seconds{{{PIPE}}}"),
                        "{{pipeline}} duration",
                    ),
                    (
                        one(
                            f"watcher_pipeline_timeliness_threshold_seconds{{{PIPE}}}",
                            "rule_source",
                        ),
                        "{{pipeline}} threshold ({{rule_source}})",
                    ),
                ],
                unit="s",
            ),
            "Violations (logged by the checks)",
            Panel(
                "Timeliness violations",
                [
                    (
                        one(
                            f"increase(watcher_pipeline_timeliness_violations_total{{{PIPE}}}[1h])",
                            "status",
                        ),
                        "{{pipeline}} {{status}}",
                    )
                ],
                width=8,
                description="Overdue executions logged in the last hour.",
            ),
            Panel(
                "Freshness violations",
                [
                    (
                        one(f"increase(watcher_pipeline_freshness_violations_total{{{PIPE}}}[1h])"),
                        "{{pipeline}}",
                    )
                ],
                width=8,
                description="Stale last-DML times logged in the last hour.",
            ),
            Panel(
                "Missed runs",
                [
                    (
                        one(f"increase(watcher_pipeline_missed_runs_total{{{PIPE}}}[1h])"),
                        "{{pipeline}}",
                    )
                ],
                width=8,
                description="Scheduled runs that did not start, in the last hour.",
            ),
        ],
    )


def anomalies() -> Dashboard:
    mpipe = f'{PIPE}, metric=~"$metric"'
    z = one(f"abs(watcher_pipeline_anomaly_z_score{{{mpipe}}})", "metric")
    threshold = one(f"watcher_pipeline_anomaly_z_threshold{{{mpipe}}}", "metric", agg="min")
    return Dashboard(
        uid="watcher-anomalies",
        title="Watcher / Anomalies",
        description="z-scores of the latest anomaly evaluation against each rule's threshold.",
        variables=_pipeline_variables(with_metric=True),
        panels=[
            Panel(
                "Anomalous metrics now",
                [
                    (
                        f"count({z} > on (pipeline, pipeline_type, metric) {threshold})"
                        " or vector(0)",
                        "",
                    )
                ],
                kind="stat",
                width=6,
            ),
            Panel(
                "Anomalies detected (last 24h)",
                [
                    (
                        "sum("
                        + one(
                            f"increase(watcher_pipeline_anomalies_detected_total{{{mpipe}}}[24h])",
                            "metric",
                        )
                        + ")",
                        "",
                    )
                ],
                kind="stat",
                width=6,
            ),
            Panel(
                "Active anomaly rules",
                [(f"count({threshold})", "")],
                kind="stat",
                width=12,
            ),
            Panel(
                "z-score vs threshold",
                [
                    (
                        one(f"watcher_pipeline_anomaly_z_score{{{mpipe}}}", "metric"),
                        "{{pipeline}} {{metric}} z",
                    ),
                    (threshold, "{{pipeline}} {{metric}} +threshold"),
                    (
                        f"-{threshold}",
                        "{{pipeline}} {{metric}} -threshold",
                    ),
                ],
                width=24,
                height=10,
            ),
            Panel(
                "|z| / threshold",
                [
                    (
                        f"{z} / on (pipeline, pipeline_type, metric) {threshold}",
                        "{{pipeline}} {{metric}}",
                    )
                ],
                kind="bargauge",
                unit="percentunit",
            ),
            Panel(
                "Rows: latest run vs learned band",
                [
                    (
                        one(f'watcher_pipeline_last_execution_rows{{{PIPE}, operation="total"}}'),
                        "{{pipeline}} total rows",
                    ),
                    (
                        one(
                            f'watcher_pipeline_expected_rows{{{PIPE}, operation="total",'
                            ' bound="lower"}',
                            agg="max",
                        ),
                        "{{pipeline}} expected (lower)",
                    ),
                    (
                        one(
                            f'watcher_pipeline_expected_rows{{{PIPE}, operation="total",'
                            ' bound="upper"}',
                            agg="min",
                        ),
                        "{{pipeline}} expected (upper)",
                    ),
                ],
                width=24,
                description=(
                    "Expected vs actual: the latest ended run's total rows between the band"
                    " learned for its hour and weekday (pipelines without an anomaly rule on"
                    " total_rows; see docs/checks.md, learned expectations)."
                ),
            ),
            Panel(
                "Anomalies detected per hour",
                [
                    (
                        one(
                            f"increase(watcher_pipeline_anomalies_detected_total{{{mpipe}}}[1h])",
                            "metric",
                        ),
                        "{{pipeline}} {{metric}}",
                    )
                ],
            ),
        ],
    )


def health() -> Dashboard:
    w = 'job="watcher"'
    return Dashboard(
        uid="watcher-health",
        title="Watcher / Service health",
        description="Watcher itself: reachability, HTTP latency and errors, database pool, "
        "scheduler jobs, leadership, snapshot; PostgreSQL via postgres-exporter.",
        time_from="now-3h",
        panels=[
            "Service",
            Panel("Replicas up", [(f"sum(up{{{w}}})", "")], kind="stat", width=6, height=4),
            Panel(
                "Leader replicas",
                [("sum(watcher_scheduler_leader)", "")],
                kind="stat",
                width=6,
                height=4,
                description="Exactly 1 is healthy (WatcherNoLeader below 1).",
            ),
            Panel(
                "Snapshot age",
                [("max(watcher_metrics_snapshot_age_seconds)", "")],
                kind="stat",
                unit="s",
                width=6,
                height=4,
            ),
            Panel(
                "Snapshot refresh time",
                [("max(watcher_metrics_snapshot_duration_seconds)", "")],
                kind="stat",
                unit="s",
                width=6,
                height=4,
            ),
            "HTTP",
            Panel(
                "Requests by route",
                [
                    (
                        f"sum by (route) (rate(watcher_http_request_duration_seconds_count[{RI}]))",
                        "{{route}}",
                    )
                ],
                unit="reqps",
                width=8,
            ),
            Panel(
                "Latency p99 by route",
                [
                    (
                        "histogram_quantile(0.99, sum by (route, le) "
                        f"(rate(watcher_http_request_duration_seconds_bucket[{RI}])))",
                        "{{route}}",
                    )
                ],
                unit="s",
                width=8,
            ),
            Panel(
                "Server errors",
                [
                    (
                        'sum(rate(watcher_http_request_duration_seconds_count{status=~"5.."}'
                        f"[{RI}])) or 0 * sum(rate(watcher_http_request_duration_seconds_count"
                        f"[{RI}]))",
                        "5xx",
                    )
                ],
                unit="reqps",
                width=8,
            ),
            "Database pool and process",
            Panel(
                "Pool connections",
                [
                    (
                        "sum by (instance, status) (watcher_db_pool_connections)",
                        "{{instance}} {{status}}",
                    ),
                    ("sum by (instance) (watcher_db_pool_max_connections)", "{{instance}} max"),
                ],
                width=8,
            ),
            Panel(
                "Resident memory",
                [(f"process_resident_memory_bytes{{{w}}}", "{{instance}}")],
                unit="bytes",
                width=8,
            ),
            Panel(
                "CPU",
                [(f"rate(process_cpu_seconds_total{{{w}}}[{RI}])", "{{instance}}")],
                unit="percentunit",
                width=8,
            ),
            "Scheduler",
            Panel(
                "Job runs",
                [
                    (
                        f"sum by (job) (rate(watcher_scheduler_job_runs_total[{RI}]))",
                        "{{job}}",
                    )
                ],
                unit="ops",
                width=8,
            ),
            Panel(
                "Job failures",
                [
                    (
                        f"sum by (job) (rate(watcher_scheduler_job_failures_total[{RI}]))",
                        "{{job}}",
                    )
                ],
                unit="ops",
                width=8,
            ),
            Panel(
                "Job duration p95",
                [
                    (
                        "histogram_quantile(0.95, sum by (job, le) "
                        f"(rate(watcher_scheduler_job_duration_seconds_bucket[{RI}])))",
                        "{{job}}",
                    )
                ],
                unit="s",
                width=8,
            ),
            Panel(
                "Time since last success / interval",
                [
                    (
                        "min by (job) (time() - watcher_scheduler_job_last_success_timestamp_seconds)"
                        " / on (job) max by (job) (watcher_scheduler_job_interval_seconds)",
                        "{{job}}",
                    )
                ],
                width=24,
                description="Above 3 the job is stalled (WatcherSchedulerStalled).",
            ),
            "PostgreSQL (postgres-exporter)",
            Panel("PostgreSQL up", [("pg_up", "{{instance}}")], kind="stat", width=6),
            Panel(
                "Database size",
                [('pg_database_size_bytes{datname!~"template.*"}', "{{datname}}")],
                unit="bytes",
                width=6,
            ),
            Panel(
                "Locks by mode",
                [("sum by (mode) (pg_locks_count)", "{{mode}}")],
                width=6,
            ),
            Panel(
                "Longest transaction",
                [("max by (datname) (pg_stat_activity_max_tx_duration)", "{{datname}}")],
                unit="s",
                width=6,
                description="Age of the oldest open transaction (long queries, idle in "
                "transaction).",
            ),
        ],
    )


REPORT_SQL = """SELECT day AS "time", pipeline_type, pipeline, executions, failures,
       error_percent, inserts, updates, soft_deletes, total_rows,
       avg_duration_seconds, avg_throughput
FROM pipeline_daily_report
WHERE day BETWEEN $__timeFrom()::date AND $__timeTo()::date
  AND pipeline_type IN ($pipeline_type)
  AND pipeline IN ($pipeline)
ORDER BY day DESC, pipeline_type, pipeline"""

DAILY_SQL = """SELECT day::timestamptz AS "time", pipeline_type AS metric,
       sum(executions) AS executions
FROM pipeline_daily_report
WHERE day BETWEEN $__timeFrom()::date AND $__timeTo()::date
  AND pipeline_type IN ($pipeline_type)
  AND pipeline IN ($pipeline)
GROUP BY 1, 2
ORDER BY 1"""

ERRORS_SQL = """SELECT day::timestamptz AS "time", pipeline_type AS metric,
       round(100.0 * sum(failures) / nullif(sum(executions - running), 0), 2) AS error_percent
FROM pipeline_daily_report
WHERE day BETWEEN $__timeFrom()::date AND $__timeTo()::date
  AND pipeline_type IN ($pipeline_type)
  AND pipeline IN ($pipeline)
GROUP BY 1, 2
ORDER BY 1"""

DML_SQL = """SELECT day::timestamptz AS "time", sum(inserts) AS inserts,
       sum(updates) AS updates, sum(soft_deletes) AS soft_deletes
FROM pipeline_daily_report
WHERE day BETWEEN $__timeFrom()::date AND $__timeTo()::date
  AND pipeline_type IN ($pipeline_type)
  AND pipeline IN ($pipeline)
GROUP BY 1
ORDER BY 1"""

# Per pipeline: the view's averages are exact only per (day, pipeline) — it does not say over
# how many executions each was taken, so averaging them again by type would mis-weight them.
DURATION_SQL = """SELECT day::timestamptz AS "time", pipeline AS metric,
       avg_duration_seconds
FROM pipeline_daily_report
WHERE day BETWEEN $__timeFrom()::date AND $__timeTo()::date
  AND pipeline_type IN ($pipeline_type)
  AND pipeline IN ($pipeline)
  AND avg_duration_seconds IS NOT NULL
ORDER BY 1, 2"""

THROUGHPUT_SQL = """SELECT day::timestamptz AS "time", pipeline AS metric, avg_throughput
FROM pipeline_daily_report
WHERE day BETWEEN $__timeFrom()::date AND $__timeTo()::date
  AND pipeline_type IN ($pipeline_type)
  AND pipeline IN ($pipeline)
  AND avg_throughput IS NOT NULL
ORDER BY 1, 2"""


def daily_report() -> Dashboard:
    return Dashboard(
        uid="watcher-daily-report",
        title="Watcher / Daily pipeline report",
        description="Long-range report from PostgreSQL (view pipeline_daily_report): "
        "executions, failures, error %, DML, duration and throughput per day, type and "
        "pipeline. Outlives Prometheus retention.",
        time_from="now-30d",
        variables=[
            _query_variable(
                "pipeline_type",
                "Pipeline type",
                "SELECT name FROM pipeline_type ORDER BY name",
                sql=True,
            ),
            _query_variable(
                "pipeline",
                "Pipeline",
                "SELECT p.name FROM pipeline p JOIN pipeline_type t ON t.id = p.pipeline_type_id "
                "WHERE t.name IN ($pipeline_type) ORDER BY p.name",
                sql=True,
            ),
        ],
        panels=[
            Panel("Executions per day", [(DAILY_SQL, "")], kind="barchart", sql=True, width=8),
            Panel("Error % per day", [(ERRORS_SQL, "")], kind="timeseries", sql=True, width=8),
            Panel("DML rows per day", [(DML_SQL, "")], kind="barchart", sql=True, width=8),
            Panel(
                "Average duration per day",
                [(DURATION_SQL, "")],
                sql=True,
                unit="s",
                description="Mean duration of the day's ended executions, per pipeline.",
            ),
            Panel(
                "Average throughput per day",
                [(THROUGHPUT_SQL, "")],
                sql=True,
                unit="short",
                description="Mean rows per second (total rows / duration) of the day's ended "
                "executions, per pipeline.",
            ),
            Panel("Daily report", [(REPORT_SQL, "")], kind="table", sql=True, width=24, height=14),
        ],
    )


# The graph around the chosen address, as GET /lineage-graph/ answers it (watcher/
# lineage_graph.py): its reach is the address with everything downstream and upstream of it
# (the closure), the edges are the direct edges touching the reach (one per pipeline), the
# nodes their endpoints. Node graph frames: nodes need `id` (+ title, subtitle, mainstat),
# edges `id`, `source`, `target`; ids are text so both frames match.
LINEAGE_REACH = """WITH reach AS (
    SELECT CAST($address AS bigint) AS id
    UNION SELECT target_address_id FROM address_lineage_closure WHERE source_address_id = $address
    UNION SELECT source_address_id FROM address_lineage_closure WHERE target_address_id = $address
),
edge AS (
    SELECT l.source_address_id, l.target_address_id, l.pipeline_id FROM address_lineage l
    WHERE l.source_address_id IN (SELECT id FROM reach)
       OR l.target_address_id IN (SELECT id FROM reach)
)"""

LINEAGE_NODES_SQL = f"""{LINEAGE_REACH}
SELECT a.id::text AS id, a.name AS title, t.name AS subtitle, t.group_name AS mainstat,
       a.id = $address AS detail__selected
FROM address a JOIN address_type t ON t.id = a.address_type_id
WHERE a.id IN (SELECT source_address_id FROM edge UNION SELECT target_address_id FROM edge)
ORDER BY a.id"""

LINEAGE_EDGES_SQL = f"""{LINEAGE_REACH}
SELECT concat_ws('-', e.source_address_id, e.target_address_id, e.pipeline_id) AS id,
       e.source_address_id::text AS source, e.target_address_id::text AS target,
       p.name AS mainstat, pt.name AS secondarystat, p.active AS detail__pipeline_active
FROM edge e
JOIN pipeline p ON p.id = e.pipeline_id
JOIN pipeline_type pt ON pt.id = p.pipeline_type_id
ORDER BY e.source_address_id, e.target_address_id, e.pipeline_id"""

ADDRESS_VARIABLE_SQL = "SELECT name AS __text, id AS __value FROM address ORDER BY name"


def lineage() -> Dashboard:
    return Dashboard(
        uid="watcher-lineage",
        title="Watcher / Lineage",
        description="The lineage graph around an address (PostgreSQL: address_lineage and "
        "its closure): what feeds it, what it feeds, and the pipelines on each edge. The "
        "same graph as GET /lineage-graph/?source_address_id=N.",
        time_from="now-24h",
        variables=[
            {
                "name": "address",
                "label": "Address",
                "type": "query",
                "datasource": POSTGRES,
                "query": ADDRESS_VARIABLE_SQL,
                "definition": ADDRESS_VARIABLE_SQL,
                "refresh": 1,
                "includeAll": False,
                "multi": False,
                "sort": 0,
            }
        ],
        panels=[
            Panel(
                "Lineage around $address",
                [(LINEAGE_NODES_SQL, "nodes"), (LINEAGE_EDGES_SQL, "edges")],
                kind="nodeGraph",
                sql=True,
                width=24,
                height=20,
                description="Nodes are addresses (title: name, subtitle: address type, "
                "main stat: group); edges point from source to target and carry the "
                "pipeline (main stat) and its type.",
            ),
        ],
    )


# --- incidents (issue 15) --------------------------------------------------------------------

INCIDENTS_SQL = """SELECT n.id AS incident, p.name AS root_pipeline,
  (SELECT string_agg(DISTINCT i.kind, ', ') FROM incident_impact i
   WHERE i.incident_id = n.id AND i.depth = 0) AS problem,
  n.started_at, n.resolved_at,
  extract(epoch FROM COALESCE(n.resolved_at, now()) - n.started_at) AS duration_seconds,
  (SELECT count(DISTINCT i.pipeline_id) FROM incident_impact i
   WHERE i.incident_id = n.id AND i.depth > 0) AS impacted_pipelines,
  n.acknowledged_by
FROM incident n JOIN pipeline p ON p.id = n.root_pipeline_id
WHERE n.resolved_at IS NULL OR n.opened_at BETWEEN $__timeFrom() AND $__timeTo()
ORDER BY n.id DESC LIMIT 200"""
# The pipeline graph (lineage: a target of one is a source of the other; nested runs) with
# each pipeline's health: broken while it is the root of, or impacted by, an open incident.
GRAPH_NODES_SQL = """SELECT p.id::text AS id, p.name AS title,
  CASE WHEN b.pipeline_id IS NULL THEN 1 ELSE 0 END AS arc__healthy,
  CASE WHEN b.pipeline_id IS NULL THEN 0 ELSE 1 END AS arc__broken
FROM pipeline p LEFT JOIN (
  SELECT DISTINCT pipeline_id FROM incident_impact WHERE detached_at IS NULL
) b ON b.pipeline_id = p.id
WHERE p.active ORDER BY p.id LIMIT 500"""
GRAPH_EDGES_SQL = """SELECT DISTINCT a.pipeline_id || '-' || b.pipeline_id AS id,
  a.pipeline_id::text AS source, b.pipeline_id::text AS target
FROM address_lineage a JOIN address_lineage b ON b.source_address_id = a.target_address_id
WHERE a.pipeline_id <> b.pipeline_id
UNION
SELECT parent_pipeline_id || '-' || child_pipeline_id, parent_pipeline_id::text,
  child_pipeline_id::text
FROM pipeline_nesting
LIMIT 2000"""


def _arc_color(field_name: str, color: str) -> dict[str, Any]:
    return {
        "matcher": {"id": "byName", "options": field_name},
        "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": color}}],
    }


def incidents() -> Dashboard:
    open_ids = "max by (incident_id, root_pipeline) ({})"
    return Dashboard(
        uid="watcher-incidents",
        title="Watcher / Incidents",
        description="One incident per root cause: open incidents, their root, impact and "
        "duration (Prometheus), recent incidents (PostgreSQL) and the pipeline graph "
        "coloured by health. See docs/incidents.md.",
        panels=[
            Panel(
                "Open incidents",
                [("count(max by (incident_id) (watcher_incident_open)) or vector(0)", "")],
                kind="stat",
                width=6,
                height=4,
                instant=True,
            ),
            Panel(
                "Impacted pipelines",
                [
                    (
                        'count(max by (pipeline) (watcher_pipeline_impacted_by{state="attached"}))'
                        " or vector(0)",
                        "",
                    )
                ],
                kind="stat",
                width=6,
                height=4,
                instant=True,
                description="Pipelines broken downstream of an open incident's root.",
            ),
            Panel(
                "Waiting for promotion",
                [
                    (
                        'count(max by (pipeline) (watcher_pipeline_impacted_by{state="pending"}))'
                        " or vector(0)",
                        "",
                    )
                ],
                kind="stat",
                width=6,
                height=4,
                instant=True,
                description="Still broken after their root's incident resolved; promoted to "
                "incidents of their own after the grace.",
            ),
            Panel(
                "Oldest open incident",
                [("time() - min(watcher_incident_started_timestamp_seconds)", "")],
                kind="stat",
                unit="s",
                width=6,
                height=4,
                instant=True,
            ),
            Panel(
                "Open incidents: root, impact, duration",
                [
                    (open_ids.format("watcher_incident_impacted_pipelines"), "pipelines"),
                    (open_ids.format("watcher_incident_impacted_datasets"), "datasets"),
                    (
                        "time() - " + open_ids.format("watcher_incident_started_timestamp_seconds"),
                        "duration",
                    ),
                ],
                kind="table",
                width=24,
                instant=True,
            ),
            Panel(
                "Impact over time",
                [
                    (
                        open_ids.format("watcher_incident_impacted_pipelines"),
                        "#{{incident_id}} {{root_pipeline}}",
                    )
                ],
                width=24,
            ),
            Panel(
                "Recent incidents",
                [(INCIDENTS_SQL, "")],
                kind="table",
                sql=True,
                width=24,
                height=10,
            ),
            Panel(
                "Pipeline graph by health",
                [(GRAPH_NODES_SQL, ""), (GRAPH_EDGES_SQL, "")],
                kind="nodeGraph",
                sql=True,
                width=24,
                height=14,
                description="Edges point downstream; red: root of or impacted by an open incident.",
                overrides=[_arc_color("arc__healthy", "green"), _arc_color("arc__broken", "red")],
            ),
        ],
    )


DASHBOARDS = (
    overview,
    freshness_timeliness,
    anomalies,
    health,
    daily_report,
    lineage,
    incidents,
)


def rendered() -> dict[str, str]:
    """File name → JSON text of every dashboard."""
    out = {}
    for build in DASHBOARDS:
        dashboard = render(build())
        out[f"{dashboard['uid']}.json"] = json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n"
    return out


def main(argv: list[str]) -> int:
    files = rendered()
    if "--check" in argv:
        stale = [n for n, text in files.items() if _read(DASHBOARDS_DIR / n) != text]
        for name in stale:
            print(f"out of date: grafana/dashboards/{name} (run grafana/generate.py)")
        return 1 if stale else 0
    DASHBOARDS_DIR.mkdir(exist_ok=True)
    for name, text in files.items():
        (DASHBOARDS_DIR / name).write_text(text)
    return 0


def _read(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
