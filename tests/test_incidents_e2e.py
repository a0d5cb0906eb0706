"""Incidents end to end with the real binaries (issue 15): a Watcher with its scheduler on
(embedded PostgreSQL), a real Prometheus with the repository's rules scraping it every
second, a real Alertmanager with the repository's routes, inhibitions and templates, and a
local HTTP server standing in for Slack.

The chain a → b → c → d (each reads the previous one's target) plus an unrelated e:

1. a fails and b, c, d go stale → exactly one Slack message, naming a and listing b, c, d;
2. e fails meanwhile → its own message;
3. b and c refresh, a recovers → the resolved message of a's incident;
4. d is still stale after the grace → an incident of its own (its own message).

No other message reaches Slack: the per-pipeline alerts (failed, not fresh) of a, b, c, d and
e fire in Prometheus and are inhibited in Alertmanager. The same scenario with the incident
engine off (Watcher's behaviour before incidents) is run too, and both counts are printed
for the closing note.

Intervals are shortened as in test_stack_e2e.py (scripts/stack.py --fast: 1 s scrapes and
evaluations, no `for`), with the ratios of the shipped routes kept: the per-pipeline routes
wait longer before their first message (10 s here, 2 m shipped) than the incident engine
needs to open the incident that inhibits them (1 s job, 1 s series refresh, 1 s scrape).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import LiveServer, free_port, start_live_server
from tests.conftest import test_settings as watcher_settings
from tests.factories import address
from tests.test_stack_e2e import INCIDENTS_DASHBOARD, SlackStandIn, _panel_queries, _require, stack
from watcher.db.embedded import EmbeddedPostgres
from watcher.db.schema import metadata

pytestmark = pytest.mark.stack
GRACE_SECONDS = 8
PER_PIPELINE_WAIT = "10s"


def _alertmanager_config(run_dir: Path, slack_url: Path) -> Path:
    path: Path = stack.alertmanager_config(run_dir, slack_url, fast=True)
    config = yaml.safe_load(path.read_text())
    for route in [config["route"], *config["route"]["routes"]]:
        route["repeat_interval"] = "1h"  # no reminders during the test
        if route.get("receiver") == "slack-incident":
            route["group_wait"] = "2s"
        elif route.get("receiver") != "null":
            route["group_wait"] = PER_PIPELINE_WAIT
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return path


@contextmanager
def running_stack(
    postgres: EmbeddedPostgres, run_dir: Path, incidents: bool
) -> Iterator[tuple[LiveServer, SlackStandIn, str]]:
    _require("prometheus")
    _require("alertmanager")
    tables = ", ".join(t.name for t in metadata.sorted_tables)
    settings = watcher_settings(
        scheduler_enabled=True,
        metrics_snapshot_interval_seconds=1.0,
        leader_check_interval_seconds=1.0,
        leader_lock_id=0x57A7E2E1,
        incidents_enabled=incidents,
        incidents_interval_seconds=1.0,
        incident_grace_seconds=GRACE_SECONDS,
    )
    slack = SlackStandIn()
    threading.Thread(target=slack.serve_forever, daemon=True).start()
    watcher = start_live_server(postgres.url, settings)
    watcher.sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    addresses = stack.Addresses(
        watcher=watcher.url.removeprefix("http://"),
        prometheus=f"127.0.0.1:{free_port()}",
        alertmanager=f"127.0.0.1:{free_port()}",
        postgres_exporter=None,
    )
    slack_url = run_dir / "slack_webhook_url"
    slack_url.write_text(slack.url)
    processes = [
        stack.start_alertmanager(
            _alertmanager_config(run_dir, slack_url), run_dir / "am", addresses.alertmanager
        ),
        stack.start_prometheus(
            stack.prometheus_config(run_dir, addresses, fast=True),
            run_dir / "prom",
            addresses.prometheus,
        ),
    ]
    try:
        with stack.running(processes):
            stack.wait_ready(f"http://{addresses.prometheus}/-/ready")
            stack.wait_ready(f"http://{addresses.alertmanager}/-/ready")
            yield watcher, slack, f"http://{addresses.prometheus}"
    finally:
        watcher.sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
        watcher.stop()
        slack.shutdown()
        slack.server_close()


def _ok(response: httpx.Response) -> Any:
    assert response.is_success, response.text
    return response.json() if response.content else None


def _run(http: httpx.Client, pid: int, start: datetime, end: datetime, ok: bool) -> None:
    body = {"pipeline_id": pid, "start_date": start.isoformat()}
    execution = _ok(http.post("/start_pipeline_execution", json=body))["id"]
    body = {"id": execution, "end_date": end.isoformat(), "completed_successfully": ok}
    _ok(http.post("/end_pipeline_execution", json=body))


def _titles(slack: SlackStandIn) -> list[str]:
    return [a["title"] for m in slack.messages for a in m.get("attachments", [])]


def _wait(what: str, check: Callable[[], bool], timeout: float = 45) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} after {timeout}s; Slack got: {_titles(SLACK[-1])}")
        time.sleep(0.5)


SLACK: list[SlackStandIn] = []


def dashboard_queries(watcher: LiveServer, prometheus: str) -> None:
    """Every query of the incidents dashboard returns data while incidents are open: the
    Prometheus ones through Prometheus' HTTP API, the SQL ones from PostgreSQL."""
    promql, sql = _panel_queries(only=INCIDENTS_DASHBOARD)
    assert len(promql) >= 7 and len(sql) == 3
    with httpx.Client(base_url=prometheus, timeout=10) as prom:

        def empty() -> list[str]:
            out = []
            for where, expr in promql:
                body = prom.get("/api/v1/query", params={"query": expr}).json()
                assert body["status"] == "success", (expr, body)
                if not body["data"]["result"]:
                    out.append(where)
            return out

        _wait("incident dashboard queries returned no data", lambda: not empty())
    for where, statement in sql:
        assert watcher.sql(statement), f"{where} returned no rows"


def scenario(
    watcher: LiveServer, slack: SlackStandIn, prometheus: str, incidents: bool
) -> list[dict[str, Any]]:
    """Run the chain scenario; returns the Slack attachments received, in order."""
    SLACK.append(slack)
    now = datetime.now(UTC)
    minute = {"freshness_number": 1, "freshness_datepart": "minute"}
    with httpx.Client(base_url=watcher.url, timeout=30) as http:
        _ok(http.post("/pipeline_type", json={"name": "etl"}))
        ids: dict[str, int] = {}
        previous = "raw"
        for name in "abcde":
            body = {"name": name, "pipeline_type_name": "etl", **minute}
            ids[name] = _ok(http.post("/pipeline", json=body))["id"]
            sources = ["elsewhere"] if name == "e" else [previous]
            lineage = {
                "pipeline_id": ids[name],
                "source_addresses": [address(s) for s in sources],
                "target_addresses": [address(f"t_{name}")],
            }
            _ok(http.post("/address_lineage", json=lineage))
            previous = f"t_{name}"
        # 1. a fails (its run started 2 minutes ago); b, c, d last wrote 61 s ago against a
        # one-minute freshness rule: stale since one second, after a's failed run started.
        _run(http, ids["a"], now - timedelta(minutes=2), now - timedelta(seconds=90), ok=False)
        for name in "bcd":
            watcher.sql(
                "UPDATE pipeline SET last_target_insert = :at WHERE id = :id",
                at=now - timedelta(seconds=61),
                id=ids[name],
            )
        if incidents:
            _wait(
                "no incident message for a",
                lambda: any("Incident #1: a" in t for t in _titles(slack)),
            )
            dashboard_queries(watcher, prometheus)
        else:
            _wait("no per-pipeline messages", lambda: len(_titles(slack)) >= 4)
        # 2. e fails meanwhile
        at = datetime.now(UTC)
        _run(http, ids["e"], at - timedelta(seconds=5), at, ok=False)
        if incidents:
            _wait(
                "no incident message for e", lambda: any(": e failed" in t for t in _titles(slack))
            )
        else:
            _wait("no message for e", lambda: any("— e" in t for t in _titles(slack)))
        # 3. b and c refresh, a recovers; d stays stale
        at = datetime.now(UTC)
        for name in "bc":
            watcher.sql(
                "UPDATE pipeline SET last_target_insert = :at WHERE id = :id", at=at, id=ids[name]
            )
        _run(http, ids["a"], at - timedelta(seconds=5), at, ok=True)
        if incidents:
            _wait(
                "no resolved message for a",
                lambda: any(t.startswith("✅") and ": a" in t for t in _titles(slack)),
            )
            # 4. d still stale after the grace → its own incident
            _wait(
                "no incident of its own for d",
                lambda: any(": d stale" in t for t in _titles(slack)),
                timeout=GRACE_SECONDS + 30,
            )
        else:
            _wait(
                "no resolved message for a",
                lambda: any("RESOLVED" in t and "— a" in t for t in _titles(slack)),
            )
        time.sleep(12)  # anything else (an uninhibited per-pipeline alert) would arrive by now
    return [a for m in slack.messages for a in m.get("attachments", [])]


def test_one_slack_message_per_incident(
    postgres: EmbeddedPostgres, tmp_path_factory: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    with running_stack(postgres, tmp_path_factory.mktemp("before"), False) as (w, s, p):
        before = scenario(w, s, p, incidents=False)
    with running_stack(postgres, tmp_path_factory.mktemp("after"), True) as (w, s, p):
        after = scenario(w, s, p, incidents=True)
    with capsys.disabled():
        print(
            f"\nSlack messages, chain scenario: without incidents {len(before)}, with {len(after)}"
        )
        for a in before:
            print("  before:", a["title"])
        for a in after:
            print("  after: ", a["title"])
    titles = [a["title"] for a in after]
    assert len(titles) == 4, titles
    first, e_message, resolved, d_message = after
    assert first["title"] == "🔴 [INCIDENT] Incident #1: a failed"
    assert "*Root cause:* `a`" in first["text"]
    assert "3 impacted pipelines (b, c, d)" in first["text"]
    assert "impact: 3 pipelines (b, c, d)" in first["text"]
    assert e_message["title"] == "🔴 [INCIDENT] Incident #2: e failed"
    assert "0 impacted pipelines" in e_message["text"]
    assert resolved["title"] == "✅ [RESOLVED] Incident #1: a failed"
    assert resolved["color"] == "good"
    assert d_message["title"].startswith("🔴 [INCIDENT] Incident #3: d stale")
    # without the incident engine, every broken pipeline alerts alone (and resolves alone)
    assert len(before) > len(after)
    firing = {a["title"].rsplit("— ", 1)[-1] for a in before if "FIRING" in a["title"]}
    assert firing >= {"a", "b", "c", "d", "e"}
