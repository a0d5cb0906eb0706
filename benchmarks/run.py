"""The whole benchmark in one run: `python -m benchmarks.run [--quick]` (`make bench`).

1. starts PostgreSQL (embedded, in a fresh temporary directory, unless WATCHER_DATABASE_URL
   or --database-url names a scratch database) and `watcher serve` in its own process;
2. ingestion lifecycle (benchmarks.loadgen, its own process) and the database-bound limit
   (benchmarks.dblimit, raw asyncpg, its own process) at each concurrency, interleaved,
   `--repeats` times; medians and Watcher ÷ limit from the same run;
3. growth: the lifecycle at `--growth-concurrency` on an empty execution table;
4. scrape cost: `/metrics` at each of `--scrape-pipelines` after a snapshot refresh;
5. bulk seed to `--check-pipelines` pipelines and `--executions` executions;
6. check cost (timeliness, freshness, missed runs, anomaly catch-up) and growth again.

Writes benchmarks/results/bench-<time>.json and latest.json, and benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from benchmarks import machine, report, seed
from benchmarks.stats import latency_summary, median

ROOT = Path(__file__).resolve().parent
CHECK_ROUTES = {
    "timeliness": "/timeliness",
    "freshness": "/freshness",
    "missed_runs": "/missed_runs",
}


def plain_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


@contextmanager
def database(url: str | None) -> Iterator[tuple[str, int | None]]:
    """(url, postmaster pid) of the database to use; a fresh embedded one when url is None."""
    if url is not None:
        yield plain_dsn(url), None
        return
    from watcher.db.embedded import start_embedded

    with tempfile.TemporaryDirectory(prefix="watcher-bench-") as tmp:
        server = start_embedded(Path(tmp) / "pg")
        pid = int((Path(tmp) / "pg" / "postmaster.pid").read_text().split()[0])
        try:
            yield server.url, pid
        finally:
            server.stop()


@contextmanager
def watcher_server(url: str, port: int, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = dict(os.environ)
    env |= {
        "WATCHER_DATABASE_URL": url,
        "WATCHER_PORT": str(port),
        "WATCHER_HOST": "127.0.0.1",
        "WATCHER_AUTH_ENABLED": "false",
        "WATCHER_AUTO_CREATE_ANOMALY_DETECTION_RULES": "true",
        "WATCHER_LOG_JSON": "true",
    }
    # The benchmark times the catch-up itself (after seeding); the job would race it.
    env.setdefault("WATCHER_ANOMALY_CATCHUP_INTERVAL_SECONDS", "86400")
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "watcher", "serve"], env=env, stdout=log, stderr=log
        )
    try:
        _wait_until_up(f"http://127.0.0.1:{port}", proc)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _wait_until_up(base: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"watcher exited with {proc.returncode}; see the server log")
        try:
            if httpx.get(base + "/", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("watcher did not start within 60 s")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Bench:
    def __init__(self, args: argparse.Namespace, url: str, pg_pid: int | None) -> None:
        self.args = args
        self.url = url
        self.pg_pid = pg_pid
        self.base = ""
        self.server_pid = 0
        self.server: subprocess.Popen[bytes] | None = None
        self.max_rss_mb = 0.0

    # --- helpers -------------------------------------------------------------------------

    def sql(self, fn: Any, *a: Any) -> Any:
        async def go() -> Any:
            conn = await asyncpg.connect(self.url)
            try:
                return await fn(conn, *a)
            finally:
                await conn.close()

        return asyncio.run(go())

    def child(self, module: str, *argv: str) -> dict[str, Any]:
        """Run a generator in its own process; meter server and PostgreSQL while it measures.

        The child prints "start" and "stop" around its measured window, then its JSON.
        """
        server_cpu, pg_cpu = machine.CpuMeter(self.server_pid), machine.CpuMeter(self.pg_pid)
        sampler = machine.RssSampler(self.server_pid)
        proc = subprocess.Popen(
            [sys.executable, "-m", module, *argv],
            stdout=subprocess.PIPE,
            cwd=ROOT.parent,
            text=True,
        )
        assert proc.stdout is not None
        result: dict[str, Any] = {}
        cores: dict[str, float | None] = {}
        for line in proc.stdout:
            if line == "start\n":
                for meter in (server_cpu, pg_cpu):
                    meter.start(time.monotonic())
                sampler.start()
            elif line == "stop\n":
                cores = {
                    "server_cpu_cores": server_cpu.stop(time.monotonic()),
                    "postgres_cpu_cores": pg_cpu.stop(time.monotonic()),
                }
                sampler.stop()
            elif line.strip():
                result = json.loads(line)
        if proc.wait() != 0 or not result:
            raise RuntimeError(f"{module} failed with {proc.returncode}")
        if self.server is not None and self.server.poll() is not None:
            raise RuntimeError(f"the watcher server exited ({self.server.returncode}) during a run")
        result |= cores
        result["server_rss_mb_max"] = sampler.max_mb or machine.rss_mb(self.server_pid)
        self.max_rss_mb = max(self.max_rss_mb, result["server_rss_mb_max"])
        return result

    def loadgen(self, concurrency: int, duration: float) -> dict[str, Any]:
        a = self.args
        return self.child(
            "benchmarks.loadgen",
            *("--url", self.base, "--concurrency", str(concurrency)),
            *("--duration", str(duration), "--warmup", str(a.warmup)),
            *("--pipelines", str(a.pipelines)),
        )

    def dblimit(self, concurrency: int) -> dict[str, Any]:
        a = self.args
        from watcher.config import load_settings

        settings = load_settings()  # the server's pool, from the same environment
        pool = settings.db_pool_size + settings.db_max_overflow
        return self.child(
            "benchmarks.dblimit",
            *("--dsn", self.url, "--concurrency", str(concurrency), "--pool", str(pool)),
            *("--duration", str(a.duration), "--warmup", str(a.warmup)),
            *("--pipelines", str(a.pipelines)),
        )

    # --- phases --------------------------------------------------------------------------

    def lifecycle(self) -> dict[str, Any]:
        by_concurrency: dict[str, Any] = {}
        for c in self.args.concurrency:
            runs, limits = [], []
            for _ in range(self.args.repeats):
                runs.append(self.loadgen(c, self.args.duration))
                limits.append(self.dblimit(c))
            by_concurrency[str(c)] = summarise(runs, limits)
            log(f"lifecycle c={c}: {brief(by_concurrency[str(c)])}")
        return by_concurrency

    def profile(self) -> dict[str, Any] | None:
        """py-spy on the server during one lifecycle run at the growth concurrency."""
        from benchmarks import profile

        out = Path(self.args.results) / "profile-server.txt"
        spy = profile.start(self.server_pid, self.args.duration, out)
        if spy is None:
            return None
        self.loadgen(self.args.growth_concurrency, self.args.duration)
        return profile.finish(spy, out)

    def growth(self, label: str) -> dict[str, Any]:
        runs = [
            self.loadgen(self.args.growth_concurrency, self.args.duration)
            for _ in range(self.args.repeats)
        ]
        executions = self.sql(lambda c: c.fetchval("SELECT count(*) FROM pipeline_execution"))
        result = summarise(runs, [])
        result["stored_executions"] = int(executions)
        log(f"growth {label} ({executions} executions): {brief(result)}")
        return result

    def scrape(self, pipelines: int) -> dict[str, Any]:
        total = self.sql(seed.seed_pipelines, pipelines)
        active = self._wait_for_snapshot(total)
        if active is None:
            return {"pipelines": total, "measured": False, "reason": "GET /metrics not served"}
        if active < total:
            reason = f"the snapshot still had {active:,} of {total:,} pipelines after 300 s"
            log(f"scrape {total} pipelines: not measured, {reason} (see the server log)")
            return {"pipelines": total, "measured": False, "reason": reason}
        times, size = [], 0
        with httpx.Client(base_url=self.base, timeout=30) as http:
            for _ in range(self.args.scrapes):
                started = time.perf_counter()
                r = http.get("/metrics")
                times.append(time.perf_counter() - started)
                size = len(r.content)
        result = {"pipelines": total, "snapshot_pipelines": active, "bytes": size}
        result |= latency_summary(times)
        log(f"scrape {total} pipelines: p50 {result['p50_ms']} ms, {size} bytes")
        return result

    def _wait_for_snapshot(self, pipelines: int) -> int | None:
        """Poll /metrics until the snapshot counts `pipelines` active ones (None: no /metrics)."""
        deadline = time.monotonic() + 300
        active = 0
        while time.monotonic() < deadline:
            r = httpx.get(self.base + "/metrics", timeout=30)
            if r.status_code == 404:
                return None
            for line in r.text.splitlines():
                if line.startswith('watcher_pipelines{status="active"}'):
                    active = int(float(line.rsplit(" ", 1)[1]))
            if active >= pipelines:
                return active
            time.sleep(0.5)
        return active

    def checks(self) -> dict[str, Any]:
        results: dict[str, Any] = {}
        with httpx.Client(base_url=self.base, timeout=600) as http:
            for name, route in CHECK_ROUTES.items():
                times, status = [], 0
                for _ in range(self.args.check_repeats):
                    started = time.perf_counter()
                    status = http.post(route, json={}).status_code
                    times.append(time.perf_counter() - started)
                    if status in (404, 405):
                        break
                if status in (404, 405):
                    results[name] = {"measured": False, "reason": f"POST {route} not served"}
                    continue
                results[name] = {
                    "status": status,
                    "first_ms": round(times[0] * 1000, 1),
                    "median_ms": round(statistics.median(times) * 1000, 1),
                    "repeats": len(times),
                }
                log(f"check {name}: {results[name]}")
        results["anomaly_catch_up"] = self.catch_up()
        results["metrics_snapshot"] = self.snapshot_refresh()
        return results

    def snapshot_refresh(self) -> dict[str, Any]:
        """The leader's metrics snapshot refresh (every 5 s by default), in this process."""
        from watcher.app import create_app
        from watcher.config import Settings
        from watcher.metrics.collectors import SnapshotStore
        from watcher.metrics.routes import refresh_snapshot

        async def go() -> list[float]:
            settings = Settings(scheduler_enabled=False, auth_enabled=False, log_level="warning")
            services = create_app(settings, database_url=self.url).state.services
            times: list[float] = []
            try:
                for _ in range(self.args.check_repeats):
                    started = time.perf_counter()
                    await refresh_snapshot(services, SnapshotStore())
                    times.append(time.perf_counter() - started)
            finally:
                await services.engine.dispose()
            return times

        times = asyncio.run(go())
        result = {
            "first_ms": round(times[0] * 1000, 1),
            "median_ms": round(statistics.median(times) * 1000, 1),
            "repeats": len(times),
        }
        log(f"metrics snapshot refresh: {result}")
        return result

    def catch_up(self) -> dict[str, Any]:
        """The anomaly catch-up job's function, run once in this process on Watcher's code."""
        try:
            from watcher.checks.anomalies.detector import catch_up
        except ImportError:
            return {"measured": False, "reason": "watcher.checks.anomalies.catch_up not there"}
        from watcher.app import create_app
        from watcher.config import Settings

        async def go() -> dict[str, Any]:
            settings = Settings(scheduler_enabled=False, auth_enabled=False, log_level="warning")
            services = create_app(settings, database_url=self.url).state.services
            try:
                started = time.perf_counter()
                evaluated = await catch_up(services)
                seconds = time.perf_counter() - started
            finally:
                await services.engine.dispose()
            return {"evaluated": evaluated, "first_ms": round(seconds * 1000, 1)}

        result = asyncio.run(go())
        result["median_ms"] = result["first_ms"]
        result["repeats"] = 1
        log(f"anomaly catch-up: {result}")
        return result

    def run(self) -> dict[str, Any]:
        """Every phase; on a failure the figures so far are kept under "error"."""
        results: dict[str, Any] = {}
        try:
            self._phases(results)
        except Exception as error:
            results["error"] = repr(error)
            log(f"benchmark stopped early: {error!r}")
        results["targets"] = report.targets(results)
        return results

    def _phases(self, results: dict[str, Any]) -> None:
        a = self.args
        pg_version = self.sql(lambda c: c.fetchval("SHOW server_version"))
        results |= {
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": " ".join(["python -m benchmarks.run", *sys.argv[1:]]),
            "machine": machine.describe(pg_version),
            "settings": {k: v for k, v in vars(a).items() if k != "results"},
        }
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        with watcher_server(self.url, port, Path(a.results) / "server.log") as proc:
            self.server_pid, self.server = proc.pid, proc
            results["lifecycle"] = self.lifecycle()
            if a.profile:
                try:
                    results["profile"] = self.profile()
                except (OSError, ValueError, subprocess.SubprocessError) as error:
                    results["profile"] = {"error": repr(error)}
            if a.lifecycle_only:
                return
            self.sql(seed.clear_executions)
            results["growth"] = {"empty": self.growth("empty")}
            results["scrape"] = [self.scrape(n) for n in a.scrape_pipelines]
            total = self.sql(seed.seed_pipelines, a.check_pipelines)
            started = time.monotonic()
            self.sql(seed.seed_executions, a.executions, a.unchecked)
            results["seed"] = {
                "pipelines": total,
                "executions": a.executions,
                "seconds": round(time.monotonic() - started, 1),
            }
            log(f"seeded {total} pipelines, {a.executions} executions")
            results["checks"] = self.checks()
            results["growth"]["full"] = self.growth("full")
        results["server_rss_mb_max"] = self.max_rss_mb


def summarise(runs: list[dict[str, Any]], limits: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over repeats of the figures that matter, plus the raw runs."""

    def med(rows: list[dict[str, Any]], *path: str) -> float | None:
        values = []
        for row in rows:
            value: Any = row
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            values.append(value)
        return median(values)

    routes = sorted({r for run in runs for r in run["routes"]})
    result: dict[str, Any] = {
        "lifecycles_per_s": med(runs, "lifecycles_per_s"),
        "requests_per_s": med(runs, "requests_per_s"),
        "errors": sum(run["errors"] for run in runs),
        "routes": {
            r: {q: med(runs, "routes", r, q) for q in ("p50_ms", "p95_ms", "p99_ms")}
            for r in routes
        },
        "p50_ms_all": med(runs, "all_requests", "p50_ms"),
        "p95_ms_all": med(runs, "all_requests", "p95_ms"),
        "p99_ms_all": med(runs, "all_requests", "p99_ms"),
        "server_rss_mb_max": max(run["server_rss_mb_max"] for run in runs),
        "server_cpu_cores": med(runs, "server_cpu_cores"),
        "postgres_cpu_cores": med(runs, "postgres_cpu_cores"),
        "generator_cpu_cores": med(runs, "generator_cpu_cores"),
        "runs": runs,
    }
    if limits:
        limit = med(limits, "lifecycles_per_s")
        result["limit"] = {
            "lifecycles_per_s": limit,
            "errors": sum(run["errors"] for run in limits),
            "postgres_cpu_cores": med(limits, "postgres_cpu_cores"),
            "generator_cpu_cores": med(limits, "generator_cpu_cores"),
            "runs": limits,
        }
        ratios = [
            w["lifecycles_per_s"] / lim["lifecycles_per_s"]
            for w, lim in zip(runs, limits, strict=True)
            if lim["lifecycles_per_s"]
        ]
        result["watcher_over_limit"] = round(median(ratios), 3) if ratios else None  # type: ignore[arg-type]
    return result


def brief(summary: dict[str, Any]) -> str:
    text = f"{summary['lifecycles_per_s']} lifecycles/s, p99 {summary['p99_ms_all']} ms"
    text += f", errors {summary['errors']}"
    if "limit" in summary:
        text += f"; limit {summary['limit']['lifecycles_per_s']}/s"
        text += f" → {summary['watcher_over_limit']}"
    return text


def log(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def ints(value: str) -> list[int]:
    return [int(v) for v in value.split(",") if v]


FULL: dict[str, Any] = {
    "concurrency": [8, 32, 64],
    "duration": 15.0,
    "warmup": 3.0,
    "repeats": 3,
    "pipelines": 200,
    "growth_concurrency": 32,
    "scrape_pipelines": [1_000, 10_000],
    "scrapes": 30,
    "check_pipelines": 10_000,
    "executions": 1_000_000,
    "unchecked": 1_000,
    "check_repeats": 3,
}
PRESETS: dict[str, dict[str, Any]] = {
    "full": {},
    "quick": {
        "duration": 6.0,
        "warmup": 1.5,
        "repeats": 2,
        "executions": 200_000,
        "scrapes": 10,
        "check_repeats": 2,
    },
    "tiny": {  # the smoke test: proves the harness runs, measures nothing
        "concurrency": [2],
        "duration": 1.0,
        "warmup": 0.3,
        "repeats": 1,
        "pipelines": 5,
        "growth_concurrency": 2,
        "scrape_pipelines": [20],
        "check_pipelines": 50,
        "executions": 2_000,
        "unchecked": 20,
        "scrapes": 2,
        "check_repeats": 1,
    },
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Options left unset take the preset's value (--quick, --tiny), else the full run's."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_const", dest="preset", const="quick", default="full")
    p.add_argument("--tiny", action="store_const", dest="preset", const="tiny")
    p.add_argument("--database-url", default=os.environ.get("WATCHER_DATABASE_URL"))
    p.add_argument("--concurrency", type=ints, help="comma-separated (8,32,64)")
    p.add_argument("--duration", type=float, help="measured seconds per run (15)")
    p.add_argument("--warmup", type=float, help="unmeasured seconds before each run (3)")
    p.add_argument("--repeats", type=int, help="runs per concurrency, medians reported (3)")
    p.add_argument("--pipelines", type=int, help="pipelines under load (200)")
    p.add_argument("--growth-concurrency", type=int, help="(32)")
    p.add_argument("--scrape-pipelines", type=ints, help="comma-separated (1000,10000)")
    p.add_argument("--scrapes", type=int, help="scrapes per size (30)")
    p.add_argument("--check-pipelines", type=int, help="(10000)")
    p.add_argument("--executions", type=int, help="seeded executions (1000000)")
    p.add_argument("--unchecked", type=int, help="executions left to anomaly catch-up (1000)")
    p.add_argument("--check-repeats", type=int, help="(3)")
    p.add_argument("--profile", action="store_true", help="py-spy the server at c=growth")
    p.add_argument("--lifecycle-only", action="store_true", help="skip the scale phases")
    p.add_argument("--results", default=str(ROOT / "results"))
    p.add_argument("--summary", default=str(ROOT / "RESULTS.md"), help="'' to skip")
    p.add_argument("--reset", action="store_true", help="allow a non-empty database")
    args = p.parse_args(argv)
    for key, value in FULL.items():
        if getattr(args, key) is None:
            setattr(args, key, PRESETS[args.preset].get(key, value))
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    Path(args.results).mkdir(parents=True, exist_ok=True)
    with database(args.database_url) as (url, pg_pid):
        from watcher.db import migrate

        migrate.upgrade(url)
        bench = Bench(args, url, pg_pid)
        existing = bench.sql(lambda c: c.fetchval("SELECT count(*) FROM pipeline"))
        if existing and not args.reset:
            raise SystemExit(
                f"the database already holds {existing} pipelines; the benchmark writes and "
                "truncates executions: point it at a scratch database or pass --reset"
            )
        results = bench.run()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for name in (f"bench-{stamp}.json", "latest.json"):
        (Path(args.results) / name).write_text(json.dumps(results, indent=2, default=str))
    if args.summary:
        Path(args.summary).write_text(report.markdown(results))
    print(report.table(results))
    return results


if __name__ == "__main__":
    main()
    raise SystemExit(0)
