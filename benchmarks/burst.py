"""The top-of-the-hour burst: N pipelines all start in the same second, then end over a minute.

`python -m benchmarks.burst --n 8000` (`make bench-burst`), in one run on one machine:

1. starts PostgreSQL (embedded, fresh) and `watcher serve` in its own process, and creates
   N pipelines;
2. **the database-bound start rate**: Watcher's own start statement
   (`executions.START_BY_ID`) for N pipelines through a raw asyncpg pool as large as
   Watcher's, as fast as PostgreSQL takes it — the rate nothing above the database can beat;
3. **the burst**: N starts fired at once, each on its own TCP connection as separate
   pipelines would open them, while background traffic (`--background` closed-loop
   lifecycles) keeps running; then the N ends spread uniformly over the next `--end-spread`
   seconds (seeded), each on its own connection again;
4. during both, `/metrics` is polled every second so the snapshot's age shows whether the
   metrics refresh kept its interval.

Reports, per phase: answers by status, connection errors, the drain time (first request sent
→ last answer), latency percentiles, and the target `drain ≤ 1.5 × N ÷ DB-bound start rate`
from the same run. Prints one JSON document and writes benchmarks/results/burst-latest.json.
Connections: N sockets on the client and server side; `ulimit -n` must exceed N + 1000.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import orjson

from benchmarks.loadgen import HTTPConnection, Recorder, lifecycle
from benchmarks.run import ROOT, database, free_port, plain_dsn, watcher_server
from benchmarks.stats import latency_summary
from watcher import executions
from watcher.config import Settings

PREFIX = "burst"


def log(message: str) -> None:
    sys.stderr.write(f"[burst {datetime.now(UTC):%H:%M:%S}] {message}\n")
    sys.stderr.flush()


async def create_pipelines(url: str, n: int) -> list[int]:
    """N pipelines through the API (32 at a time); their ids in order."""
    parts = urlsplit(url)
    ids: list[int] = [0] * n
    queue = iter(range(n))

    async def worker() -> None:
        conn = HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80)
        try:
            for i in queue:
                body = {"name": f"{PREFIX}_{i:05d}", "pipeline_type_name": PREFIX}
                status, payload = await conn.request("POST", "/pipeline", orjson.dumps(body))
                if status not in (200, 201):
                    raise RuntimeError(f"POST /pipeline answered {status}: {payload[:200]!r}")
                ids[i] = int(orjson.loads(payload)["id"])
        finally:
            await conn.close()

    await asyncio.gather(*(worker() for _ in range(32)))
    return ids


async def db_bound_start_rate(dsn: str, pipeline_ids: list[int], pool_size: int) -> float:
    """Starts per second PostgreSQL takes for Watcher's start statement, from a pool as
    large as Watcher's; the executions are deleted again afterwards."""
    pool = await asyncpg.create_pool(dsn, min_size=pool_size, max_size=pool_size)
    statement = executions.START_BY_ID
    queue = iter(pipeline_ids)
    made: list[int] = []

    async def worker() -> None:
        async with pool.acquire() as conn:
            for pipeline_id in queue:
                now = datetime.now(UTC)
                params = {
                    "pipeline_id": pipeline_id,
                    "start_date": now,
                    "hour": now.hour,
                    "day": now.date(),
                }
                row = await conn.fetchrow(statement.sql, *statement.args(params))
                made.append(int(row["id"]))

    try:
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(pool_size)))
        seconds = time.perf_counter() - started
        await pool.execute("DELETE FROM pipeline_execution WHERE id = ANY($1::bigint[])", made)
    finally:
        await pool.close()
    return len(pipeline_ids) / seconds


async def one_call(
    host: str, port: int, route: str, body: dict[str, Any], limit: float
) -> tuple[str, float, float, bytes]:
    """One request on its own new connection: (outcome, sent at, answered at, payload)."""
    conn = HTTPConnection(host, port)
    sent = time.perf_counter()
    try:
        status, payload = await asyncio.wait_for(
            conn.request("POST", route, orjson.dumps(body)), limit
        )
        return str(status), sent, time.perf_counter(), payload
    except TimeoutError:
        return "timeout", sent, time.perf_counter(), b""
    except (OSError, asyncio.IncompleteReadError, ValueError) as error:
        return f"connection {type(error).__name__}", sent, time.perf_counter(), b""
    finally:
        await conn.close()


def phase_report(
    results: list[tuple[str, float, float, bytes]], expected: str, n: int, bound: float
) -> dict[str, Any]:
    outcomes = Counter(r[0] for r in results)
    first = min(r[1] for r in results)
    last = max(r[2] for r in results)
    drain = last - first
    return {
        "requests": len(results),
        "answered_by_status": {k: v for k, v in sorted(outcomes.items()) if k.isdigit()},
        "errors": sum(v for k, v in outcomes.items() if k != expected),
        "errors_by_kind": {k: v for k, v in sorted(outcomes.items()) if k != expected},
        "drain_seconds": round(drain, 3),
        "latency": latency_summary([r[2] - r[1] for r in results]),
        "target_drain_seconds": round(1.5 * n / bound, 3),
    }


async def background(url: str, stop: asyncio.Event, concurrency: int) -> dict[str, Any]:
    """Closed-loop lifecycles on other pipelines while the burst runs."""
    parts = urlsplit(url)
    rec = Recorder()
    rec.recording = True

    async def client(seed: int) -> None:
        conn = HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80)
        rng = random.Random(seed)
        try:
            while not stop.is_set():
                try:
                    await lifecycle(conn, rec, rng, 50, f"{PREFIX}_background")
                except (OSError, asyncio.IncompleteReadError, ValueError) as error:
                    rec.errors[f"connection {type(error).__name__}"] += 1
                    await conn.close()
                    await asyncio.sleep(0.05)
        finally:
            await conn.close()

    await asyncio.gather(*(client(i) for i in range(concurrency)))
    return {
        "lifecycles": rec.lifecycles,
        "errors": sum(rec.errors.values()),
        "errors_by_kind": dict(rec.errors),
        "latency": latency_summary([s for v in rec.latencies.values() for s in v]),
    }


async def snapshot_ages(url: str, stop: asyncio.Event) -> list[float]:
    """The metrics snapshot's age, polled every second (None while a scrape fails)."""
    ages: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        while not stop.is_set():
            try:
                text = (await http.get("/metrics")).text
                for line in text.splitlines():
                    if line.startswith("watcher_metrics_snapshot_age_seconds"):
                        ages.append(float(line.rsplit(" ", 1)[1]))
            except httpx.HTTPError:
                pass
            await asyncio.sleep(1)
    return ages


async def burst(args: argparse.Namespace, url: str, dsn: str) -> dict[str, Any]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    log(f"creating {args.n} pipelines")
    ids = await create_pipelines(url, args.n)
    settings = Settings()
    pool = settings.db_pool_size + settings.db_max_overflow
    log(f"database-bound start rate (pool {pool})")
    bound = await db_bound_start_rate(dsn, ids, pool)
    log(f"  {bound:.0f} starts/s")
    stop = asyncio.Event()
    bg = asyncio.create_task(background(url, stop, args.background))
    ages = asyncio.create_task(snapshot_ages(url, stop))
    await asyncio.sleep(2)
    log(f"burst: {args.n} starts at once")
    starts = await asyncio.gather(
        *(
            one_call(host, port, "/start_pipeline_execution", {"pipeline_id": i}, args.timeout)
            for i in ids
        )
    )
    execution_ids = [int(orjson.loads(p)["id"]) for s, _, _, p in starts if s == "201"]
    log(f"  drained; ends over {args.end_spread:.0f} s")
    rng = random.Random(args.seed)

    async def end(execution_id: int) -> tuple[str, float, float, bytes]:
        await asyncio.sleep(rng.uniform(0, args.end_spread))
        rows = [rng.randrange(1000) for _ in range(3)]
        body = {
            "id": execution_id,
            "completed_successfully": True,
            "inserts": rows[0],
            "updates": rows[1],
            "soft_deletes": rows[2],
            "total_rows": sum(rows),
        }
        return await one_call(host, port, "/end_pipeline_execution", body, args.timeout)

    ends = await asyncio.gather(*(end(e) for e in execution_ids))
    stop.set()
    background_result = await bg
    observed_ages = await ages
    return {
        "n": args.n,
        "db_bound_starts_per_s": round(bound, 1),
        "starts": phase_report(starts, "201", args.n, bound),
        "ends": phase_report(ends, "204", len(execution_ids), bound)
        | {"spread_seconds": args.end_spread, "target_drain_seconds": None},
        "background": background_result,
        "snapshot_age_seconds_max": max(observed_ages, default=None),
        "snapshot_interval_seconds": settings.metrics_snapshot_interval_seconds,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=8000, help="pipelines starting at once (8000)")
    p.add_argument("--end-spread", type=float, default=60.0, help="ends over (60 s)")
    p.add_argument("--background", type=int, default=4, help="background clients (4)")
    p.add_argument("--timeout", type=float, default=120.0, help="per request (120 s)")
    p.add_argument("--seed", type=int, default=20261203)
    p.add_argument("--database-url", default=None, help="a scratch database (else embedded)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 2 * args.n + 1000)), hard))
    results_dir = ROOT / "results"
    results_dir.mkdir(exist_ok=True)
    with database(args.database_url) as (db_url, _pid):
        port = free_port()
        with watcher_server(db_url, port, results_dir / "burst-server.log"):
            result = asyncio.run(burst(args, f"http://127.0.0.1:{port}", plain_dsn(db_url)))
    result["command"] = "python -m benchmarks.burst " + " ".join(argv or sys.argv[1:])
    result["finished_at"] = datetime.now(UTC).isoformat()
    Path(results_dir / "burst-latest.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
