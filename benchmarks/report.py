"""Turning a results document into the targets verdict and the markdown summary."""

from __future__ import annotations

from typing import Any

Row = dict[str, Any]


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        value = f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return f"{value}{unit}"


def _target(name: str, value: Any, met: bool | None, shown: str) -> Row:
    return {"target": name, "value": value, "shown": shown, "met": met}


def targets(r: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    c32 = r.get("lifecycle", {}).get(str(r["settings"]["growth_concurrency"]))
    if c32:
        ratio = c32.get("watcher_over_limit")
        rows.append(
            _target(
                "lifecycle throughput ≥ 50% of the DB-bound limit at c=32, zero errors",
                ratio,
                ratio is not None and ratio >= 0.5 and c32["errors"] == 0,
                f"{_fmt(ratio)} of limit, {c32['errors']} errors",
            )
        )
        worst = max((v["p99_ms"] or 0) for v in c32["routes"].values())
        rows.append(
            _target("p99 per request < 50 ms at c=32", worst, worst < 50, f"{_fmt(worst)} ms")
        )
    big = [s for s in r.get("scrape", []) if s.get("pipelines", 0) >= 10_000]
    if big and big[-1].get("measured", True):
        p95 = big[-1]["p95_ms"]
        rows.append(
            _target(
                "/metrics ≤ 100 ms at 10,000 pipelines (p95)", p95, p95 <= 100, f"{_fmt(p95)} ms"
            )
        )
    else:
        rows.append(_target("/metrics ≤ 100 ms at 10,000 pipelines", None, None, "not measured"))
    for name, check in r.get("checks", {}).items():
        if check.get("measured", True):
            ms = check["median_ms"]
            rows.append(_target(f"{name} check ≤ 1 s", ms, ms <= 1000, f"{_fmt(ms)} ms"))
        else:
            rows.append(_target(f"{name} check ≤ 1 s", None, None, check["reason"]))
    growth = r.get("growth", {})
    if "empty" in growth and "full" in growth:
        empty, full = growth["empty"]["p50_ms_all"], growth["full"]["p50_ms_all"]
        ratio = round(full / empty, 2) if empty and full else None
        rows.append(
            _target(
                f"latency at {growth['full']['stored_executions']:,} executions ≤ 1.5× empty (p50)",
                ratio,
                ratio is not None and ratio <= 1.5,
                f"{_fmt(ratio)}× ({_fmt(full)} vs {_fmt(empty)} ms)",
            )
        )
    rss = r.get("server_rss_mb_max")
    if rss is not None:
        rows.append(_target("server RSS ≤ 250 MB under load", rss, rss <= 250, f"{_fmt(rss)} MB"))
    return rows


def table(r: dict[str, Any]) -> str:
    lines = [
        "| concurrency | lifecycles/s | requests/s | DB limit lifecycles/s | Watcher ÷ limit "
        "| p50 / p95 / p99 ms (all requests) | errors | server CPU | PostgreSQL CPU "
        "| generator CPU | server RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c, s in r.get("lifecycle", {}).items():
        limit = s.get("limit", {})
        lines.append(
            f"| {c} | {_fmt(s['lifecycles_per_s'])} | {_fmt(s['requests_per_s'])} "
            f"| {_fmt(limit.get('lifecycles_per_s'))} | {_fmt(s.get('watcher_over_limit'))} "
            f"| {_fmt(s['p50_ms_all'])} / {_fmt(s['p95_ms_all'])} / {_fmt(s['p99_ms_all'])} "
            f"| {s['errors']} | {_fmt(s['server_cpu_cores'])} | {_fmt(s['postgres_cpu_cores'])} "
            f"| {_fmt(s['generator_cpu_cores'])} | {_fmt(s['server_rss_mb_max'])} |"
        )
    return "\n".join(lines)


def _routes(r: dict[str, Any]) -> str:
    lines = ["| concurrency | route | p50 ms | p95 ms | p99 ms |", "|---|---|---|---|---|"]
    for c, s in r.get("lifecycle", {}).items():
        for route, q in s["routes"].items():
            lines.append(
                f"| {c} | `{route}` | {_fmt(q['p50_ms'])} | {_fmt(q['p95_ms'])} "
                f"| {_fmt(q['p99_ms'])} |"
            )
    return "\n".join(lines)


def _scale(r: dict[str, Any]) -> str:
    lines = ["| measurement | result |", "|---|---|"]
    for s in r.get("scrape", []):
        if s.get("measured", True):
            shown = f"p50 {_fmt(s['p50_ms'])} ms, p95 {_fmt(s['p95_ms'])} ms, {s['bytes']:,} bytes"
        else:
            shown = s["reason"]
        lines.append(f"| `/metrics` at {s['pipelines']:,} pipelines | {shown} |")
    seed = r.get("seed", {})
    for name, check in r.get("checks", {}).items():
        shown = (
            f"median {_fmt(check['median_ms'])} ms (first {_fmt(check['first_ms'])} ms)"
            if check.get("measured", True)
            else check["reason"]
        )
        lines.append(
            f"| {name} at {seed.get('pipelines', 0):,} pipelines / "
            f"{seed.get('executions', 0):,} executions | {shown} |"
        )
    for label, g in r.get("growth", {}).items():
        lines.append(
            f"| lifecycle at c={r['settings']['growth_concurrency']}, {label} "
            f"({g['stored_executions']:,} executions) | {_fmt(g['lifecycles_per_s'])}/s, "
            f"p50 {_fmt(g['p50_ms_all'])} ms, p99 {_fmt(g['p99_ms_all'])} ms |"
        )
    if seed:
        lines.append(f"| bulk seed | {seed['seconds']} s |")
    return "\n".join(lines)


def _targets(r: dict[str, Any]) -> str:
    lines = ["| target | measured | met |", "|---|---|---|"]
    for t in r.get("targets", []):
        met = {True: "yes", False: "**no**", None: "not measured"}[t["met"]]
        lines.append(f"| {t['target']} | {t['shown']} | {met} |")
    return "\n".join(lines)


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    return f"""# Benchmark results

Latest run: {r["started_at"]}, preset `{r["settings"]["preset"]}`, commit `{m["watcher_commit"]}`.
Command: `{r["command"]}` (`make bench`). Raw figures: `benchmarks/results/latest.json`.

Machine: {m["cpu_cores"]} cores ({m["cpu_model"]}), {m["memory_gb"]} GB, {m["os"]},
Python {m["python"]}, PostgreSQL {m["postgresql"]}; load average at start
{m["load_average_at_start"]} (the machine is shared: compare ratios from one run, not runs).
Server, PostgreSQL and the load generator share these cores.

Medians of {r["settings"]["repeats"]} runs of {r["settings"]["duration"]} s each
(after {r["settings"]["warmup"]} s warm-up), {r["settings"]["pipelines"]} pipelines, 95% of
executions successful, anomaly rules on every metric. "DB limit" replays the same SQL with raw
asyncpg in one process (no HTTP), interleaved with the Watcher runs.

## Targets

{_targets(r)}

## Ingestion lifecycle (create-or-get pipeline → start → end)

{table(r)}

CPU columns are cores in use (of {m["cpu_cores"]}).

{_routes(r)}

## Scale: scrape, checks, growth

{_scale(r)}
"""
