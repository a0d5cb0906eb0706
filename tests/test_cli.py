"""The `watcher` API commands through their entry point against a live Watcher (and once as a
real subprocess): tables, --json, filters, checks' exit codes, cleanup, errors."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.conftest import LiveServer, start_live_server
from tests.conftest import test_settings as settings_for
from tests.factories import address, end, make_pipeline, start
from watcher import auth
from watcher.cli.local import build_parser, main
from watcher.db.embedded import EmbeddedPostgres

NOW = datetime.now(UTC)


def watcher(
    capsys: pytest.CaptureFixture[str], live: LiveServer, *argv: str
) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([*argv, "--url", live.url])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def history(client: httpx.Client) -> dict[str, int]:
    """Two pipelines: orders (one success, one failure, one running), refunds (old success)."""
    orders = make_pipeline(client, "orders_load", next_watermark="2026-01-02")["id"]
    refunds = make_pipeline(client, "refunds_load")["id"]
    ok = start(client, orders, start_date=(NOW - timedelta(hours=3)).isoformat())
    end(client, ok, inserts=10, total_rows=10, end_date=(NOW - timedelta(hours=2)).isoformat())
    bad = start(client, orders, start_date=(NOW - timedelta(hours=1)).isoformat())
    end(client, bad, ok=False, end_date=(NOW - timedelta(minutes=30)).isoformat())
    running = start(client, orders, parent_id=ok)
    old = start(client, refunds, start_date=(NOW - timedelta(days=200)).isoformat())
    end(client, old, end_date=(NOW - timedelta(days=199)).isoformat())
    return {"orders": orders, "refunds": refunds, "ok": ok, "bad": bad, "running": running}


def test_pipelines_list_prints_a_table_and_json(
    capsys: pytest.CaptureFixture[str], live: LiveServer, history: dict[str, int]
) -> None:
    code, out, _ = watcher(capsys, live, "pipelines", "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["ID", "NAME", "TYPE"]
    assert "orders_load" in lines[1] and "2026-01-02" in lines[1]
    assert "refunds_load" in lines[2]
    code, out, _ = watcher(capsys, live, "pipelines", "list", "--json")
    assert [p["name"] for p in json.loads(out)] == ["orders_load", "refunds_load"]
    code, out, _ = watcher(capsys, live, "pipelines", "list", "--limit", "1", "--json")
    assert len(json.loads(out)) == 1


def test_pipelines_show_finds_a_pipeline_by_name_with_its_last_runs(
    capsys: pytest.CaptureFixture[str], live: LiveServer, history: dict[str, int]
) -> None:
    code, out, _ = watcher(capsys, live, "pipelines", "show", "ORDERS_LOAD")
    assert code == 0
    assert "pipeline_type_name" in out and "extraction" in out
    assert "last 3 executions" in out
    assert "running" in out and "failed" in out and "succeeded" in out
    code, out, _ = watcher(capsys, live, "pipelines", "show", str(history["refunds"]), "--json")
    assert json.loads(out)["name"] == "refunds_load"
    assert len(json.loads(out)["recent_executions"]) == 1


def test_executions_list_filters_by_pipeline_status_and_since(
    capsys: pytest.CaptureFixture[str], live: LiveServer, history: dict[str, int]
) -> None:
    def ids(*filters: str) -> list[int]:
        code, out, _ = watcher(capsys, live, "executions", "list", "--json", *filters)
        assert code == 0
        return [e["id"] for e in json.loads(out)]

    assert ids("--pipeline", "orders_load") == [history["running"], history["bad"], history["ok"]]
    assert ids("--status", "failed") == [history["bad"]]
    assert ids("--status", "running") == [history["running"]]
    assert ids("--since", "2h") == [history["running"], history["bad"]]
    assert len(ids("--since", (NOW - timedelta(days=365)).date().isoformat())) == 4
    assert ids("--pipeline", str(history["refunds"]), "--status", "succeeded") != []
    code, out, _ = watcher(capsys, live, "executions", "list", "--status", "failed")
    assert code == 0
    assert out.splitlines()[0].split()[:3] == ["ID", "PIPELINE", "STATUS"]
    assert "orders_load" in out and "failed" in out


def declare(client: httpx.Client, name: str, sources: list[str], targets: list[str]) -> None:
    body = {
        "pipeline_id": make_pipeline(client, name)["id"],
        "source_addresses": [address(n) for n in sources],
        "target_addresses": [address(n) for n in targets],
    }
    assert client.post("/address_lineage", json=body).status_code == 201


def test_lineage_prints_upstream_and_downstream_trees_of_direct_edges(
    capsys: pytest.CaptureFixture[str], live: LiveServer, client: httpx.Client
) -> None:
    # raw → stage → mart, and raw → side → mart: a diamond below raw.
    declare(client, "stage", ["raw.public.orders"], ["stage.public.orders"])
    declare(client, "side", ["raw.public.orders"], ["side.public.orders"])
    declare(client, "mart", ["stage.public.orders", "side.public.orders"], ["mart.public.orders"])
    code, out, _ = watcher(capsys, live, "lineage", "stage.public.orders")
    assert code == 0
    assert [line.split("  [")[0] for line in out.splitlines()] == [
        out.splitlines()[0],
        "upstream (what it is built from): 1",
        "  └── ← raw.public.orders",
        "downstream (what is built from it): 1",
        "  └── → mart.public.orders",
    ]
    assert out.splitlines()[0].startswith("stage.public.orders (#")
    assert "[postgres, #" in out.splitlines()[2]

    code, out, _ = watcher(capsys, live, "lineage", "raw.public.orders")
    assert "upstream (what it is built from): none" in out
    tree = out.splitlines()[out.splitlines().index("downstream (what is built from it): 3") + 1 :]
    assert [line.split("  [")[0] for line in tree] == [
        "  ├── → side.public.orders",
        "  │   └── → mart.public.orders",
        "  └── → stage.public.orders",
        "      └── → mart.public.orders",
    ]
    assert tree[3].endswith("(shown above)")  # the diamond's second path is not expanded

    code, out, _ = watcher(capsys, live, "lineage", "raw.public.orders", "--json")
    down = json.loads(out)["downstream"]
    assert [(a["address_name"], a["depth"]) for a in down] == [
        ("side.public.orders", 1),
        ("stage.public.orders", 1),
        ("mart.public.orders", 2),
    ]
    code, out, _ = watcher(capsys, live, "lineage", "raw.public.orders", "--depth", "1")
    assert "mart.public.orders" not in out and "→ stage.public.orders" in out
    code, _, err = watcher(capsys, live, "lineage", "no.such.table")
    assert code == 3 and "no address named" in err


def test_lineage_marks_a_cycle_instead_of_following_it(
    capsys: pytest.CaptureFixture[str], live: LiveServer, client: httpx.Client
) -> None:
    declare(client, "forth", ["a.public.t"], ["b.public.t"])
    declare(client, "back", ["b.public.t"], ["a.public.t"])
    code, out, _ = watcher(capsys, live, "lineage", "a.public.t")
    assert code == 0
    lines = [line.split("  [")[0] for line in out.splitlines()]
    assert "  └── → b.public.t" in lines and "      └── → a.public.t" in lines
    assert out.splitlines()[-1].endswith("(cycle)")


def test_checks_exit_1_with_findings_and_0_without(
    capsys: pytest.CaptureFixture[str], live: LiveServer, client: httpx.Client
) -> None:
    for check in ("timeliness", "freshness", "missed-runs"):
        code, out, _ = watcher(capsys, live, "check", check)
        assert (code, out.strip()) == (0, f"{check}: no findings")
    slow = make_pipeline(client, "slow_load", timeliness_number=5, timeliness_datepart="minute")
    start(client, slow["id"], start_date=(NOW - timedelta(minutes=20)).isoformat())
    code, out, err = watcher(capsys, live, "check", "timeliness", "--lookback-minutes", "60")
    assert code == 1
    assert "slow_load" in out and "running" in out
    assert "1 finding(s), 1 new" in err
    code, out, _ = watcher(capsys, live, "check", "timeliness", "--json")
    assert json.loads(out)["findings"][0]["newly_logged"] is False


def test_cleanup_dry_run_prints_what_would_go_and_deletes_nothing(
    capsys: pytest.CaptureFixture[str], live: LiveServer, history: dict[str, int]
) -> None:
    code, out, err = watcher(capsys, live, "cleanup", "--retention-days", "90", "--dry-run")
    assert code == 0, err
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines()[1:] if line[:1].isalpha()}
    assert out.splitlines()[0].split() == ["TABLE", "WOULD", "DELETE"]
    assert rows["pipeline_execution"] == "1" and rows["pipeline_execution_closure"] == "1"
    assert "2 rows would be deleted" in out  # the old execution and its closure row
    assert "nothing was deleted" in out and "dry run" in err
    assert len(live.sql("SELECT id FROM pipeline_execution")) == 4
    code, out, _ = watcher(capsys, live, "cleanup", "--retention-days", "90", "--dry-run", "--json")
    report = json.loads(out)
    assert report["dry_run"] is True and report["would_delete"]["pipeline_execution"] == 1
    assert len(live.sql("SELECT id FROM pipeline_execution")) == 4


def test_cleanup_deletes_old_history_and_refuses_a_short_retention(
    capsys: pytest.CaptureFixture[str], live: LiveServer, history: dict[str, int]
) -> None:
    code, out, _ = watcher(capsys, live, "cleanup", "--retention-days", "90", "--batch-size", "1")
    assert code == 0
    assert "pipeline_execution " in out and "2 rows deleted" in out  # the execution, its closure
    assert len(live.sql("SELECT id FROM pipeline_execution")) == 3
    for days in ("30", "89", "ninety"):
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            main(["cleanup", "--retention-days", days, "--url", live.url])
        assert exit_info.value.code == 2  # refused before anything is sent
        assert "--retention-days" in capsys.readouterr().err


def test_http_errors_and_an_unreachable_server_exit_3(
    capsys: pytest.CaptureFixture[str], live: LiveServer
) -> None:
    code, _, err = watcher(capsys, live, "pipelines", "show", "999")
    assert code == 3 and "HTTP 404" in err and "pipeline 999 not found" in err
    capsys.readouterr()
    assert main(["pipelines", "list", "--url", "http://127.0.0.1:9"]) == 3
    assert "cannot reach Watcher" in capsys.readouterr().err


def test_usage_errors_exit_2_and_every_command_has_help(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for argv in (
        ["executions", "list", "--since", "last tuesday"],
        ["cleanup"],
        ["check", "nonsense"],
        ["pipelines"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2, argv
    for argv in command_paths():
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            main([*argv, "--help"])
        assert exit_info.value.code == 0
        assert "exit codes:" in capsys.readouterr().out, argv


def command_paths() -> list[list[str]]:
    """Every command and action of the parser, e.g. ["tokens", "revoke"]."""
    found: list[list[str]] = []

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> None:
        for action in parser._subparsers._group_actions if parser._subparsers else ():
            for name, child in action.choices.items():  # type: ignore[union-attr]
                found.append([*path, name])
                walk(child, [*path, name])

    walk(build_parser(), [])
    return found


def test_every_command_lists_its_exit_codes_including_the_local_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    paths = command_paths()
    for expected in (["serve"], ["migrate"], ["tokens"], ["tokens", "create"], ["cleanup"]):
        assert expected in paths
    for argv in ([], ["serve"], ["migrate"], ["tokens", "list"], ["tokens", "revoke"]):
        capsys.readouterr()
        with pytest.raises(SystemExit):
            main([*argv, "--help"])
        out = capsys.readouterr().out
        assert "exit codes" in out and "130" in out, argv
        if argv:
            assert "WATCHER_DATABASE_URL" in out and "3    Watcher" not in out, argv
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["pipelines", "list", "--help"])
    assert "3    Watcher unreachable" in capsys.readouterr().out


@pytest.fixture(scope="module")
def secured(postgres: EmbeddedPostgres) -> Iterator[LiveServer]:
    server = start_live_server(postgres.url, settings_for(auth_enabled=True))
    yield server
    server.stop()


def test_the_token_goes_as_a_bearer_token(
    capsys: pytest.CaptureFixture[str],
    live: LiveServer,
    secured: LiveServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, token = secured.in_transaction(
        lambda conn: auth.create_token(conn, "cli", ["read"], datetime.now(UTC))
    )
    monkeypatch.setenv("WATCHER_URL", secured.url)
    assert main(["pipelines", "list"]) == 3
    assert "HTTP 401" in capsys.readouterr().err
    monkeypatch.setenv("WATCHER_TOKEN", token)
    assert main(["pipelines", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["cleanup", "--retention-days", "90"]) == 3  # admin scope needed
    assert "HTTP 403" in capsys.readouterr().err


def test_the_installed_entry_point_runs_as_a_subprocess(
    live: LiveServer, history: dict[str, int]
) -> None:
    env = {**os.environ, "WATCHER_URL": live.url}
    listing = subprocess.run(
        [sys.executable, "-m", "watcher", "executions", "list", "--status", "failed", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert listing.returncode == 0, listing.stderr
    assert [e["id"] for e in json.loads(listing.stdout)] == [history["bad"]]
    refused = subprocess.run(
        [sys.executable, "-m", "watcher", "executions", "list", "--status", "weird"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert refused.returncode == 2 and "invalid choice" in refused.stderr
