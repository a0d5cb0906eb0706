"""The monitoring configuration as source: Prometheus config and rules (promtool), Alertmanager
(amtool), Grafana provisioning and dashboards, docker-compose — checked with the real tools.

The binaries come from Debian's `prometheus` and `prometheus-alertmanager` packages. Locally a
missing binary skips its test with the reason; in CI (`CI=true`) it is a failure.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import create_async_engine

from tests.learned_helpers import learned_expectations
from watcher.availability.heartbeat import AvailabilityCollector, Heartbeat, suppressed_counter
from watcher.availability.windows import Gate, Window
from watcher.checks.rules import Rule
from watcher.clock import FrozenClock
from watcher.config import Settings
from watcher.events import Events, ExecutionEnded, ExecutionStarted, JobFinished, RequestFinished
from watcher.incidents.metrics import Exported, IncidentCollector, IncidentSeries
from watcher.metrics.collectors import Metrics, SchedulerCollector, SnapshotCollector, SnapshotStore
from watcher.metrics.learned import LearnedState
from watcher.metrics.snapshot import AnomalyState, LastExecution, PipelineState, Snapshot
from watcher.scheduler import Scheduler

ROOT = Path(__file__).resolve().parent.parent
MONITORING = ROOT / "monitoring"
DASHBOARDS = ROOT / "grafana" / "dashboards"
STABLE_UIDS = {
    "watcher-pipeline-overview",
    "watcher-freshness-timeliness",
    "watcher-anomalies",
    "watcher-health",
    "watcher-daily-report",
    "watcher-lineage",
    "watcher-incidents",
}
ALERTS = {
    "WatcherIncident",
    "WatcherPipelineImpacted",
    "WatcherPipelineNotFresh",
    "WatcherExecutionOverdueRunning",
    "WatcherExecutionOverdueCompleted",
    "WatcherExecutionFailed",
    "WatcherMissedRun",
    "WatcherAnomalyDetected",
    "WatcherPipelineLateStart",
    "WatcherDown",
    "WatcherSchedulerStalled",
    "WatcherNotIngesting",
    "WatcherNoLeader",
    "WatcherMetricsSnapshotStale",
    "WatcherHighErrorRate",
    "WatcherDatabasePoolSaturated",
}


def load_script(path: Path) -> ModuleType:
    """Import a repository script (scripts/stack.py, grafana/generate.py) by path."""
    name = f"_watcher_script_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def need(*names: str) -> str:
    """Path of the first installed binary of `names`; skip (fail in CI) when none is."""
    found = next((p for n in names if (p := shutil.which(n))), None)
    if found is None:
        reason = f"{names[0]} not installed (Debian packages prometheus, prometheus-alertmanager)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def run(*args: str, cwd: Path = ROOT) -> str:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


# --- Prometheus ------------------------------------------------------------------------------


METRICS_TOKEN = "../secrets/metrics_token"  # relative to monitoring/, as docs/security.md documents


def test_prometheus_config_is_valid(tmp_path: Path) -> None:
    """The full check (rule files, token file) runs on a copy of monitoring/ beside a stand-in
    token: the real one is git-ignored and only exists where someone created it."""
    promtool = need("promtool")
    shutil.copytree(MONITORING, tmp_path / "monitoring")
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "metrics_token").write_text("wt_stand_in\n")
    run(promtool, "check", "config", "prometheus.yml", cwd=tmp_path / "monitoring")
    # Its token file exists only inside the compose stack: check the syntax here.
    run(promtool, "check", "config", "--syntax-only", "monitoring/prometheus.docker.yml")


def test_the_scrape_config_authenticates_with_a_token_file_by_default() -> None:
    """Authentication is on by default, so the shipped config sends a bearer token read from
    a file — never one written in the config."""
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    watcher = next(j for j in config["scrape_configs"] if j["job_name"] == "watcher")
    assert watcher["authorization"] == {"type": "Bearer", "credentials_file": METRICS_TOKEN}
    stack = load_script(ROOT / "scripts" / "stack.py")
    assert (MONITORING / METRICS_TOKEN).resolve() == stack.DEFAULT_TOKEN_FILE
    assert "secrets/" in (ROOT / ".gitignore").read_text().split()


def test_rules_are_valid_and_every_alert_has_the_slack_fields() -> None:
    run(need("promtool"), "check", "rules", *map(str, sorted(MONITORING.glob("rules/*.yml"))))
    alerts = [r for r in _rules() if "alert" in r]
    assert {a["alert"] for a in alerts} == ALERTS
    for alert in alerts:
        assert alert["labels"]["severity"] in ("critical", "warning", "info")
        assert {"summary", "description", "value", "threshold"} <= set(alert["annotations"])


def test_promtool_unit_tests_pass_and_cover_every_alert() -> None:
    out = run(
        need("promtool"),
        "test",
        "rules",
        *sorted(p.name for p in MONITORING.glob("tests/*.yml")),
        cwd=MONITORING / "tests",
    )
    assert "FAILED" not in out
    tested: dict[str, set[str]] = {}
    for path in MONITORING.glob("tests/*.yml"):
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                kind = "fires" if case["exp_alerts"] else "silent"
                tested.setdefault(case["alertname"], set()).add(kind)
    for alert in ALERTS:
        assert tested.get(alert) == {"fires", "silent"}, f"{alert}: {tested.get(alert)}"


def test_scrape_config_takes_an_optional_bearer_token_file(tmp_path: Path) -> None:
    stack = load_script(ROOT / "scripts" / "stack.py")
    token = tmp_path / "token"
    token.write_text("wt_example\n")
    addresses = stack.Addresses("127.0.0.1:8001", "127.0.0.1:9091", "127.0.0.1:9094")
    path = stack.prometheus_config(tmp_path, addresses, token_file=token, fast=True)
    config = yaml.safe_load(path.read_text())
    watcher = next(j for j in config["scrape_configs"] if j["job_name"] == "watcher")
    assert watcher["authorization"] == {"type": "Bearer", "credentials_file": str(token)}
    assert watcher["static_configs"] == [{"targets": ["127.0.0.1:8001"]}]
    assert config["global"]["scrape_interval"] == "1s"
    run(need("promtool"), "check", "config", str(path))
    plain = stack.prometheus_config(tmp_path, addresses)
    assert "authorization" not in plain.read_text()


# --- Alertmanager ----------------------------------------------------------------------------


def test_alertmanager_config_is_valid_and_holds_no_webhook() -> None:
    out = run(need("amtool"), "check-config", "alertmanager/alertmanager.yml")
    assert "SUCCESS" in out
    text = (ROOT / "alertmanager" / "alertmanager.yml").read_text()
    assert "hooks.slack.com" not in text and "api_url:" not in text
    config = yaml.safe_load(text)
    assert config["global"]["slack_api_url_file"]


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        ("severity=critical alertname=WatcherExecutionFailed", "slack-critical"),
        ("severity=warning alertname=WatcherPipelineNotFresh", "slack-warning"),
        ("severity=info alertname=Anything", "slack-info"),
        ("severity=critical alertname=WatcherIncident incident_id=7", "slack-incident"),
        ("severity=info alertname=WatcherPipelineImpacted pipeline=b", "null"),
    ],
)
def test_alerts_route_by_severity(labels: str, receiver: str) -> None:
    amtool = need("amtool")
    out = run(
        amtool,
        "config",
        "routes",
        "test",
        "--config.file=alertmanager/alertmanager.yml",
        *labels.split(),
    )
    assert out.strip() == receiver


def test_slack_templates_render() -> None:
    out = run(
        need("amtool"),
        "template",
        "render",
        "--template.glob=alertmanager/templates/*.tmpl",
        '--template.text={{ template "watcher.slack.title" . }}|{{ template "watcher.slack.text" . }}',
    )
    assert "*Time:*" in out and "*Message:*" in out


NOT_ENDED = "0001-01-01T00:00:00Z"  # Alertmanager's zero time: a firing alert's endsAt


def _alert(status: str, labels: dict[str, str], annotations: dict[str, str]) -> dict[str, Any]:
    ends = "2024-03-10T12:30:00Z" if status == "resolved" else NOT_ENDED
    return {
        "status": status,
        "labels": labels,
        "annotations": annotations,
        "startsAt": "2024-03-10T12:00:00Z",
        "endsAt": ends,
    }


def render_slack(tmp_path: Path, status: str, *alerts: dict[str, Any]) -> tuple[str, str, str]:
    """(title, color, text) of the Slack message for one notification group, by amtool."""
    common = {
        k: v for k, v in alerts[0]["labels"].items() if all(a["labels"].get(k) == v for a in alerts)
    }
    data = {
        "receiver": f"slack-{common.get('severity', 'warning')}",
        "status": status,
        "alerts": list(alerts),
        "groupLabels": {k: v for k, v in common.items() if k in ("alertname", "pipeline")},
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
    }
    path = tmp_path / "notification.json"
    path.write_text(json.dumps(data))
    out = run(
        need("amtool"),
        "template",
        "render",
        "--template.glob=alertmanager/templates/*.tmpl",
        f"--template.data={path}",
        '--template.text={{ template "watcher.slack.title" . }}\x1f'
        '{{ template "watcher.slack.color" . }}\x1f{{ template "watcher.slack.text" . }}',
    )
    title, color, text = out.rstrip("\n").split("\x1f")
    return title, color, text


def test_a_critical_alert_renders_red_with_its_pipeline(tmp_path: Path) -> None:
    failed = _alert(
        "firing",
        {
            "alertname": "WatcherExecutionFailed",
            "severity": "critical",
            "pipeline": "orders",
            "pipeline_type": "etl",
        },
        {
            "summary": "Pipeline orders failed",
            "description": "The last execution of orders (etl) ended unsuccessfully at "
            "2024-03-10 11:58:00 +0000 UTC.",
            "value": "failed",
            "threshold": "success",
        },
    )
    title, color, text = render_slack(tmp_path, "firing", failed)
    assert title == "🔴 [FIRING:1] WatcherExecutionFailed — orders"
    assert color == "danger"
    assert text == (
        "*🔴 CRITICAL* Pipeline orders failed\n"
        "*Time:* 2024-03-10 12:00:00 UTC\n"
        "*Message:* The last execution of orders (etl) ended unsuccessfully at "
        "2024-03-10 11:58:00 +0000 UTC.\n"
        "• *Pipeline:* `orders` (type `etl`)\n"
        "• *Value:* failed\n"
        "• *Expected threshold:* success"
    )


STALE = {
    "alertname": "WatcherPipelineNotFresh",
    "severity": "warning",
    "pipeline": "orders",
    "pipeline_type": "etl",
    "rule_source": "child",
}
STALE_TEXT = {
    "summary": "Pipeline orders is not fresh",
    "description": "orders (etl) last changed its target 1h 30m 0s ago; its child freshness "
    "rule allows 1h 0m 0s.",
    "value": "1h 30m 0s",
    "threshold": "1h 0m 0s",
}


def test_a_resolved_alert_renders_green_with_when_it_ended(tmp_path: Path) -> None:
    title, color, text = render_slack(tmp_path, "resolved", _alert("resolved", STALE, STALE_TEXT))
    assert title == "✅ [RESOLVED] WatcherPipelineNotFresh — orders"
    assert color == "good"
    assert text == (
        "*✅ RESOLVED* Pipeline orders is not fresh\n"
        "*Time:* 2024-03-10 12:00:00 UTC → resolved 2024-03-10 12:30:00 UTC\n"
        "*Message:* orders (etl) last changed its target 1h 30m 0s ago; its child freshness "
        "rule allows 1h 0m 0s.\n"
        "• *Pipeline:* `orders` (type `etl`)\n"
        "• *Value:* 1h 30m 0s\n"
        "• *Expected threshold:* 1h 0m 0s\n"
        "• *Rule source:* pipeline rule (child)"
    )


def test_a_group_of_alerts_renders_one_block_each_and_counts_the_firing(tmp_path: Path) -> None:
    def anomaly(status: str, metric: str, z: str) -> dict[str, Any]:
        labels = {
            "alertname": "WatcherAnomalyDetected",
            "severity": "warning",
            "pipeline": "orders",
            "pipeline_type": "etl",
            "metric": metric,
        }
        annotations = {
            "summary": f"Anomalous {metric} for pipeline orders",
            "description": f"The latest {metric} of orders (etl) is {z} standard deviations "
            "from its baseline; the rule allows 3.00.",
            "value": f"|z| = {z}",
            "threshold": "3.00",
        }
        return _alert(status, labels, annotations)

    title, color, text = render_slack(
        tmp_path,
        "firing",
        anomaly("firing", "inserts", "4.50"),
        anomaly("firing", "total_rows", "3.50"),
        anomaly("resolved", "duration_seconds", "3.20"),
    )
    assert title == "🟠 [FIRING:2] WatcherAnomalyDetected — orders"
    assert color == "warning"
    blocks = text.split("\n\n")
    assert [b.splitlines()[0] for b in blocks] == [
        "*🟠 WARNING* Anomalous inserts for pipeline orders",
        "*🟠 WARNING* Anomalous total_rows for pipeline orders",
        "*✅ RESOLVED* Anomalous duration_seconds for pipeline orders",
    ]
    assert blocks[1] == (
        "*🟠 WARNING* Anomalous total_rows for pipeline orders\n"
        "*Time:* 2024-03-10 12:00:00 UTC\n"
        "*Message:* The latest total_rows of orders (etl) is 3.50 standard deviations from its "
        "baseline; the rule allows 3.00.\n"
        "• *Pipeline:* `orders` (type `etl`)\n"
        "• *Metric:* `total_rows`\n"
        "• *Value:* |z| = 3.50\n"
        "• *Expected threshold:* 3.00"
    )
    assert "→ resolved 2024-03-10 12:30:00 UTC" in blocks[2]


def test_a_group_across_pipelines_names_none_in_its_title(tmp_path: Path) -> None:
    def stalled(job: str) -> dict[str, Any]:
        labels = {"alertname": "WatcherSchedulerStalled", "severity": "warning", "job": job}
        annotations = {
            "summary": f"Watcher job {job} has not succeeded recently",
            "description": f"Scheduled job {job} last succeeded 20m 0s ago.",
            "value": "20m 0s",
            "threshold": "15m 0s",
        }
        return _alert("firing", labels, annotations)

    title, _, text = render_slack(tmp_path, "firing", stalled("freshness"), stalled("timeliness"))
    assert title == "🟠 [FIRING:2] WatcherSchedulerStalled"
    assert "*Pipeline:*" not in text and text.count("*🟠 WARNING*") == 2


# --- Grafana ---------------------------------------------------------------------------------


def _dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def test_dashboard_files_match_their_generator() -> None:
    generate = load_script(ROOT / "grafana" / "generate.py")
    assert generate.rendered() == {n: (DASHBOARDS / n).read_text() for n in _dashboards()}


def test_dashboards_have_stable_unique_uids_and_complete_panels() -> None:
    dashboards = _dashboards()
    uids = [d["uid"] for d in dashboards.values()]
    assert sorted(uids) == sorted(STABLE_UIDS)
    provisioned = {d["uid"] for d in _datasources()}
    for name, dashboard in dashboards.items():
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids)), name
        for panel in (p for p in dashboard["panels"] if p["type"] != "row"):
            where = f"{name}: {panel['title']}"
            assert panel["datasource"]["uid"] in provisioned, where
            assert panel["targets"], where
            for target in panel["targets"]:
                assert target["datasource"]["uid"] in provisioned, where
                assert (target.get("expr") or target.get("rawSql", "")).strip(), where
        for variable in dashboard["templating"]["list"]:
            assert variable["datasource"]["uid"] in provisioned


def test_overview_filters_the_execution_counters_by_pipeline() -> None:
    overview = _dashboards()["watcher-pipeline-overview.json"]
    counters = re.compile(
        r"watcher_executions_(started|finished)_total|watcher_execution_rows_total"
    )
    queries = [
        t["expr"]
        for p in overview["panels"]
        for t in p.get("targets", [])
        if counters.search(t.get("expr", ""))
    ]
    assert len(queries) >= 4  # executions finished, error rate, started, DML rows
    for query in queries:
        assert 'pipeline=~"$pipeline"' in query, query


def test_daily_report_plots_average_duration_and_throughput_per_day() -> None:
    report = _dashboards()["watcher-daily-report.json"]
    for column in ("avg_duration_seconds", "avg_throughput"):
        plotted = [
            p["title"]
            for p in report["panels"]
            if p["type"] == "timeseries"
            and any(column in t["rawSql"] and t["format"] == "time_series" for t in p["targets"])
        ]
        assert plotted, column


def _datasources() -> list[dict[str, Any]]:
    path = ROOT / "grafana" / "provisioning" / "datasources" / "watcher.yml"
    return yaml.safe_load(path.read_text())["datasources"]  # type: ignore[no-any-return]


def test_provisioning_points_at_the_dashboards_and_both_datasources() -> None:
    assert {(d["type"], d["uid"]) for d in _datasources()} == {
        ("prometheus", "watcher-prometheus"),
        ("postgres", "watcher-postgres"),
    }
    path = ROOT / "grafana" / "provisioning" / "dashboards" / "watcher.yml"
    provider = yaml.safe_load(path.read_text())["providers"][0]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in mounts


def exported_names() -> set[str]:
    """Every sample name Watcher exports, from the real collectors with every field set."""
    now = datetime(2024, 1, 1, tzinfo=UTC)
    registry, events, clock = CollectorRegistry(), Events(), FrozenClock(now)
    metrics = Metrics(registry)
    scheduler = Scheduler(
        "postgresql://unused", lock_id=1, check_seconds=5, clock=FrozenClock(), events=events
    )

    async def job() -> None:
        return None

    scheduler.add_job("metrics_snapshot", job, seconds=5)
    registry.register(SchedulerCollector(scheduler, metrics, 0.0))
    store = SnapshotStore()
    state = PipelineState(
        name="p",
        pipeline_type="t",
        last_execution=LastExecution(True, now, now, 1.0, {"total": 1}, 1.0),
        last_dml=now,
        freshness=Rule(1, "day", True),
        timeliness=Rule(1, "day", False),
        timeliness_threshold_seconds=86_400,
        running=1,
        oldest_running_start=now - timedelta(minutes=1),
        watermark="1",
        anomalies=(AnomalyState("inserts", 3.0, 1.0, 0),),
        learned=LearnedState(learned_expectations(), start=True, duration=True, freshness=True),
    )
    store.replace(Snapshot(now, 0.1, (state, PipelineState("q", "t", watermark="2024-01-01"))))
    registry.register(SnapshotCollector(store, lambda: now, lambda: (0, 0, 1)))
    metrics.execution_started(ExecutionStarted(1, 1, "p", "t", now))
    metrics.execution_ended(ExecutionEnded(1, 1, "p", "t", True, now, 1.0, 1, 1, 1, 1, 1.0))
    metrics.request_finished(RequestFinished("GET", "/", 200, 0.1))
    metrics.job_finished(JobFinished("metrics_snapshot", True, 0.1, now))
    incidents = IncidentCollector()
    incidents.current = Exported(
        (IncidentSeries("1", "p", ("failed",), 0.0, ("q",), 1, "p failed"),),
        (("q", "p", "1", "attached"),),
    )
    registry.register(incidents)
    heartbeat = Heartbeat(
        create_async_engine("postgresql+asyncpg://unused@h/db"), clock, Settings()
    )
    heartbeat.gate = Gate([Window(now - timedelta(minutes=1), now)], now, timedelta(minutes=10))
    registry.register(AvailabilityCollector(heartbeat))
    suppressed_counter(registry).labels("freshness", "ingest_gap").inc()
    families = [*registry.collect(), *store.registry.collect()]
    return {s.name for family in families for s in family.samples}


PROMQL_NAME = re.compile(r"\b(watcher_[a-z_]+|[a-z_]+:watcher_[a-z0-9_:]+)\b")


def test_rules_and_dashboards_use_only_exported_names() -> None:
    exported = exported_names()
    recorded = {r["record"] for r in _rules() if "record" in r}
    queries = [r["expr"] for r in _rules()]
    queries += [
        t.get("expr", "")
        for d in _dashboards().values()
        for p in d["panels"]
        for t in p.get("targets", [])
    ]
    used = {name for q in queries for name in PROMQL_NAME.findall(q)}
    unknown = used - exported - recorded
    assert not unknown, sorted(unknown)


def _rules() -> list[dict[str, Any]]:
    return [
        rule
        for path in sorted(MONITORING.glob("rules/*.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


# --- docker compose --------------------------------------------------------------------------


def test_compose_runs_the_whole_stack_with_pinned_images_and_existing_mounts() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {
        "postgres",
        "watcher",
        "prometheus",
        "alertmanager",
        "grafana",
        "postgres-exporter",
    } <= set(services)
    for name, service in services.items():
        image = service.get("image", "")
        if "build" not in service:
            tag = image.rsplit(":", 1)[-1]
            assert ":" in image and tag != "latest" and re.search(r"\d", tag), name
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name}: {source}"
            else:
                assert source in compose["volumes"], f"{name}: {source}"
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    assert services["alertmanager"]["secrets"] == ["slack_webhook_url"]
    assert compose["secrets"]["slack_webhook_url"] == {"environment": "SLACK_WEBHOOK_URL"}
    prometheus = yaml.safe_load((MONITORING / "prometheus.docker.yml").read_text())
    targets = {
        j["job_name"]: j["static_configs"][0]["targets"][0] for j in prometheus["scrape_configs"]
    }
    assert targets["watcher"] == "watcher:8000"
    assert targets["postgres"] == "postgres-exporter:9187"
    token = prometheus["scrape_configs"][0]["authorization"]["credentials_file"]
    assert any(v.endswith(f":{Path(token).parent}:ro") for v in services["prometheus"]["volumes"])


def test_an_incident_renders_its_root_and_impact(tmp_path: Path) -> None:
    labels = {
        "alertname": "WatcherIncident",
        "severity": "critical",
        "incident_id": "17",
        "root_pipeline": "extract",
        "pipeline": "extract",
    }
    annotations = {
        "summary": "Incident #17: extract failed",
        "description": "extract failed at 02:00 UTC — impact: 3 pipelines (b, c, d)",
        "value": "3 impacted pipelines (b, c, d), 4 datasets",
        "threshold": "root cause: extract",
    }
    for status, title in (
        ("firing", "🔴 [INCIDENT] Incident #17: extract failed"),
        ("resolved", "✅ [RESOLVED] Incident #17: extract failed"),
    ):
        data = {
            "receiver": "slack-incident",
            "status": status,
            "alerts": [_alert(status, labels, annotations)],
            "groupLabels": {"incident_id": "17"},
            "commonLabels": labels,
            "commonAnnotations": {},
            "externalURL": "http://alertmanager.example:9093",
        }
        path = tmp_path / "incident.json"
        path.write_text(json.dumps(data))
        out = run(
            need("amtool"),
            "template",
            "render",
            "--template.glob=alertmanager/templates/*.tmpl",
            f"--template.data={path}",
            '--template.text={{ template "watcher.incident.title" . }}\x1f'
            '{{ template "watcher.incident.text" . }}',
        )
        rendered_title, text = out.rstrip("\n").split("\x1f")
        assert rendered_title == title
        assert "*Root cause:* `extract`" in text
        assert "*Impact:* 3 impacted pipelines (b, c, d), 4 datasets" in text
        assert ("→ resolved 2024-03-10 12:30:00 UTC" in text) == (status == "resolved")
