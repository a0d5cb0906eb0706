"""`watcher pipelines|executions|lineage|check|cleanup`: the HTTP API from a terminal.

These commands talk to a running Watcher (`--url`, WATCHER_URL, default http://127.0.0.1:8000)
with an optional bearer token (`--token`, WATCHER_TOKEN), never to the database. Tables go to
stdout (`--json` for the raw JSON), progress and errors to stderr.

Exit codes scripts can rely on:
    0  success (for checks: nothing found)
    1  a check found overdue executions, stale pipelines or missed runs
    2  usage error (bad arguments)
    3  Watcher unreachable, or it answered with an HTTP error (401/403/404/422/5xx)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeAlias

import orjson

from watcher.cli.api import (
    EXIT_FINDINGS,
    EXIT_HTTP,
    EXIT_OK,
    Api,
    ApiError,
    api_of,
    common,
    positive,
    resolve,
    retention,
    since,
)
from watcher.cli.output import Row, cell, emit_json, execution_status, status, table, ticking

# --- commands ----------------------------------------------------------------------------

PIPELINE_COLUMNS = [
    ("id", "id"),
    ("name", "name"),
    ("pipeline_type_name", "type"),
    ("active", "active"),
    ("load_lineage", "lineage"),
    ("watermark", "watermark"),
    ("last_target_insert", "last insert"),
]
EXECUTION_COLUMNS = [
    ("id", "id"),
    ("pipeline_name", "pipeline"),
    ("status", "status"),
    ("start_date", "start"),
    ("end_date", "end"),
    ("duration_seconds", "seconds"),
    ("total_rows", "rows"),
    ("inserts", "inserts"),
    ("parent_id", "parent"),
]


def cmd_pipelines_list(args: argparse.Namespace, api: Api) -> int:
    rows = list(api.pages("/pipeline", {}, None if args.all else args.limit))
    if args.json:
        emit_json(rows)
    else:
        table(rows, PIPELINE_COLUMNS, sys.stdout)
    return EXIT_OK


def cmd_pipelines_show(args: argparse.Namespace, api: Api) -> int:
    pipeline = resolve(api, "/pipeline", args.pipeline, "pipeline")
    pipeline = api.call("GET", f"/pipeline/{pipeline['id']}")
    recent = api.call(
        "GET", "/pipeline_execution", params={"pipeline_id": pipeline["id"], "limit": args.runs}
    )
    if args.json:
        emit_json({**pipeline, "recent_executions": recent})
        return EXIT_OK
    width = max(len(k) for k in pipeline)
    for key, value in pipeline.items():
        shown = orjson.dumps(value).decode() if isinstance(value, dict | list) else cell(value)
        print(f"{key.ljust(width)}  {shown}")
    print(f"\nlast {len(recent)} executions:")
    table([r | {"status": execution_status(r)} for r in recent], EXECUTION_COLUMNS, sys.stdout)
    return EXIT_OK


def cmd_executions_list(args: argparse.Namespace, api: Api) -> int:
    params: dict[str, Any] = {}
    if args.pipeline:
        params["pipeline_id"] = resolve(api, "/pipeline", args.pipeline, "pipeline")["id"]
    if args.status:
        params["status"] = args.status
    if args.since:
        params["since"] = args.since.isoformat()
    rows = [
        r | {"status": execution_status(r)}
        for r in api.pages("/pipeline_execution", params, args.limit)
    ]
    if args.json:
        emit_json(rows)
    else:
        table(rows, EXECUTION_COLUMNS, sys.stdout)
    return EXIT_OK


SIDES = (
    ("upstream", "←", "what it is built from"),
    ("downstream", "→", "what is built from it"),
)


class LineageTree:
    """An address's lineage as trees of direct edges, one per side.

    GET /address_lineage/{id} answers every address reachable, with its shortest distance,
    but not the edges between them; with `?depth=1` it answers an address's direct
    neighbours. The tree asks that once per address it shows (cached): diamonds show an
    address under each of its parents, expanded the first time only; cycles stop.
    """

    def __init__(self, api: Api, depth: int | None) -> None:
        self.api = api
        self.depth = depth
        self.near: dict[int, Row] = {}

    def neighbours(self, address_id: int, side: str) -> list[Row]:
        if address_id not in self.near:
            path = f"/address_lineage/{address_id}"
            self.near[address_id] = self.api.call("GET", path, params={"depth": 1})
        return sorted(self.near[address_id][side], key=lambda r: r["address_name"])

    def lines(self, root: int, side: str, arrow: str) -> list[str]:
        out: list[str] = []
        shown: set[int] = set()

        def walk(node: int, prefix: str, path: tuple[int, ...]) -> None:
            if self.depth is not None and len(path) > self.depth:
                return
            children = self.neighbours(node, side)
            for i, row in enumerate(children):
                last = i == len(children) - 1
                child = row["address_id"]
                label = f"{arrow} {row['address_name']}  [{row['address_type_name']}, #{child}]"
                if child in path:
                    note, expand = "  (cycle)", False
                elif child in shown:
                    note, expand = "  (shown above)", False
                else:
                    note, expand = "", True
                out.append(f"{prefix}{'└── ' if last else '├── '}{label}{note}")
                shown.add(child)
                if expand:
                    walk(child, prefix + ("    " if last else "│   "), (*path, child))

        walk(root, "", (root,))
        return out


def cmd_lineage(args: argparse.Namespace, api: Api) -> int:
    found = resolve(api, "/address", args.address, "address")
    params = {"depth": args.depth} if args.depth else {}
    graph = api.call("GET", f"/address_lineage/{found['id']}", params=params)
    if args.json:
        emit_json(graph)
        return EXIT_OK
    related = len(graph["upstream"]) + len(graph["downstream"])
    if related > 20:
        status(f"fetching the direct edges of {related} related addresses…")
    tree = LineageTree(api, args.depth)
    print(f"{graph['address_name']} (#{graph['address_id']})")
    for side, arrow, meaning in SIDES:
        count = len(graph[side])
        print(f"{side} ({meaning}): {count or 'none'}")
        if count:
            for line in tree.lines(graph["address_id"], side, arrow):
                print(f"  {line}")
    return EXIT_OK


CHECKS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "timeliness": (
        "/timeliness",
        [
            ("pipeline_execution_id", "execution"),
            ("pipeline_name", "pipeline"),
            ("execution_status", "status"),
            ("start_date", "start"),
            ("duration_seconds", "seconds"),
            ("seconds_threshold", "threshold"),
            ("newly_logged", "new"),
        ],
    ),
    "freshness": (
        "/freshness",
        [
            ("pipeline_id", "id"),
            ("pipeline_name", "pipeline"),
            ("last_dml_timestamp", "last dml"),
            ("lag_seconds", "lag s"),
            ("threshold_seconds", "threshold s"),
            ("newly_logged", "new"),
        ],
    ),
    "missed-runs": (
        "/missed_runs",
        [
            ("pipeline_id", "id"),
            ("pipeline_name", "pipeline"),
            ("expected_at", "expected"),
            ("last_start", "last start"),
            ("schedule", "schedule"),
            ("newly_logged", "new"),
        ],
    ),
}


def cmd_check(args: argparse.Namespace, api: Api) -> int:
    path, columns = CHECKS[args.check]
    body = {"lookback_minutes": args.lookback_minutes} if args.check == "timeliness" else None
    with ticking(f"running the {args.check} check…"):
        result = api.call("POST", path, json=body)
    findings = result.get("findings", [])
    if args.json:
        emit_json(result)
    elif findings:
        table(findings, columns, sys.stdout)
    else:
        print(f"{args.check}: no findings")
    if findings:
        status(f"{args.check}: {len(findings)} finding(s), {result.get('new_findings', 0)} new")
    return EXIT_FINDINGS if findings else EXIT_OK


def cutoff(retention_days: int) -> date:
    """The server's rule: today (UTC) − retention_days; rows started before it go."""
    return datetime.now(UTC).date() - timedelta(days=retention_days)


def cmd_cleanup(args: argparse.Namespace, api: Api) -> int:
    body = {"retention_days": args.retention_days, "batch_size": args.batch_size}
    if args.dry_run:
        # The server counts with the very cutoff it would delete at, in a read-only transaction.
        message = f"counting rows older than {cutoff(args.retention_days)} (dry run)…"
        body["dry_run"] = True
    else:
        message = f"deleting rows older than {cutoff(args.retention_days)} in batches…"
    with ticking(message):
        result = api.call("POST", "/log_cleanup", json=body)
    if args.json:
        emit_json(result)
        return EXIT_OK
    counts = result.get("would_delete" if args.dry_run else "deleted", {})
    heading = "would delete" if args.dry_run else "deleted"
    table(
        [{"table": t, "rows": n} for t, n in counts.items()],
        [("table", "table"), ("rows", heading)],
        sys.stdout,
    )
    total = sum(counts.values())
    if args.dry_run:
        print(f"dry run: cutoff {cell(result.get('cutoff'))}, {total} rows would be deleted")
        print("nothing was deleted")
    else:
        print(f"cutoff {cell(result.get('cutoff'))}, {total} rows deleted")
    return EXIT_OK


def run(handler: Callable[[argparse.Namespace, Api], int]) -> Callable[[argparse.Namespace], int]:
    """Open the API for the command and turn transport/HTTP errors into exit code 3."""

    def command(args: argparse.Namespace) -> int:
        api = api_of(args)
        try:
            return handler(args, api)
        except ApiError as error:
            print(f"watcher: {error}", file=sys.stderr)
            return EXIT_HTTP
        finally:
            api.close()

    return command


# --- registration ------------------------------------------------------------------------

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


EXIT_CODES = """exit codes:
  0    success (checks: nothing found)
  1    a check found something
  2    usage error
  3    Watcher unreachable or an HTTP error (401/403/404/422/5xx)
  130  interrupted
environment: WATCHER_URL, WATCHER_TOKEN"""
OWN = ("pipelines", "executions", "lineage", "check", "cleanup")


def register(sub: Subparsers) -> None:
    """Add the commands, each (and each action) with --help ending in the exit codes."""
    _register(sub)
    pending = [sub.choices[name] for name in OWN]
    while pending:
        parser = pending.pop()
        parser.epilog = EXIT_CODES
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        for action in parser._subparsers._group_actions if parser._subparsers else ():
            pending.extend(action.choices.values())  # type: ignore[union-attr]


def _register(sub: Subparsers) -> None:
    parent = common()
    _register_pipelines(sub, parent)
    executions = sub.add_parser(
        "executions", help="list executions", description="List executions, newest first."
    )
    actions = executions.add_subparsers(dest="executions_command", metavar="ACTION", required=True)
    listing = actions.add_parser("list", parents=[parent], help="executions, newest first")
    listing.add_argument("--pipeline", help="pipeline id or name")
    listing.add_argument("--status", choices=["running", "succeeded", "failed"])
    listing.add_argument("--since", type=since, help="30m, 24h, 7d, 2w or an ISO date/datetime")
    listing.add_argument("--limit", type=positive, default=50, help="rows (default 50)")
    listing.set_defaults(func=run(cmd_executions_list))

    lineage = sub.add_parser(
        "lineage",
        parents=[parent],
        help="upstream and downstream trees of an address",
        description=(
            "Show the addresses upstream and downstream of ADDRESS as trees of direct "
            "lineage edges (an address reached twice is expanded once; cycles are marked)."
        ),
    )
    lineage.add_argument("address", metavar="ADDRESS", help="address id or name")
    lineage.add_argument("--depth", type=positive, help="limit to this many hops")
    lineage.set_defaults(func=run(cmd_lineage))

    _register_checks(sub, parent)

    cleanup = sub.add_parser(
        "cleanup",
        parents=[parent],
        help="delete history older than a retention (POST /log_cleanup)",
        description="Delete executions and check logs older than --retention-days (≥ 90).",
    )
    cleanup.add_argument(
        "--retention-days", type=retention, required=True, help="days to keep, at least 90"
    )
    cleanup.add_argument("--batch-size", type=positive, default=10_000, help="default 10000")
    cleanup.add_argument(
        "--dry-run",
        action="store_true",
        help="count per table what would be deleted; delete nothing",
    )
    cleanup.set_defaults(func=run(cmd_cleanup))


def _register_pipelines(sub: Subparsers, parent: argparse.ArgumentParser) -> None:
    pipelines = sub.add_parser(
        "pipelines", help="list and show pipelines", description="List and show pipelines."
    )
    actions = pipelines.add_subparsers(dest="pipelines_command", metavar="ACTION", required=True)
    listing = actions.add_parser("list", parents=[parent], help="pipelines by id")
    listing.add_argument("--limit", type=positive, default=100, help="rows (default 100)")
    listing.add_argument("--all", action="store_true", help="every pipeline, page by page")
    listing.set_defaults(func=run(cmd_pipelines_list))
    show = actions.add_parser("show", parents=[parent], help="one pipeline and its last runs")
    show.add_argument("pipeline", metavar="PIPELINE", help="pipeline id or name")
    show.add_argument("--runs", type=positive, default=10, help="recent executions (default 10)")
    show.set_defaults(func=run(cmd_pipelines_show))


def _register_checks(sub: Subparsers, parent: argparse.ArgumentParser) -> None:
    check = sub.add_parser(
        "check",
        help="run a check now (exit 1 when it finds something)",
        description="Run a check now on the server; exit code 1 when it finds something.",
    )
    kinds = check.add_subparsers(dest="check", metavar="CHECK", required=True)
    timeliness = kinds.add_parser("timeliness", parents=[parent], help="overdue executions")
    timeliness.add_argument(
        "--lookback-minutes", type=int, default=60, help="executions started within (default 60)"
    )
    kinds.add_parser("freshness", parents=[parent], help="pipelines whose data is stale")
    kinds.add_parser("missed-runs", parents=[parent], help="scheduled runs that did not start")
    for parser in kinds.choices.values():
        parser.set_defaults(func=run(cmd_check))
