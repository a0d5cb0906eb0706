"""The database-bound limit: Watcher's own lifecycle statements replayed with raw asyncpg.

The statements are Watcher's own `watcher.db.driver.Statement`s, so the SQL text and arguments
are byte for byte what the service sends on its driver connections; each commits on its
own (no BEGIN/COMMIT), as the service's ingestion routes do. No HTTP, no pydantic, no
Starlette: what is left is PostgreSQL plus the driver. Connections
come from an asyncpg pool as large as Watcher's (pool size + overflow), so both face the
same number of database sessions. Runs in its own process; prints one JSON document.

    python -m benchmarks.dblimit --dsn postgresql://… --concurrency 32 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from benchmarks.loadgen import mark
from benchmarks.stats import latency_summary
from watcher import executions, pipelines
from watcher.db.driver import Statement
from watcher.db.schema import ANOMALY_METRICS

UPSERT = pipelines.upsert_statement(("next_watermark",))
START = executions.START_BY_ID
END = executions.END_SQL


async def one(pool: asyncpg.Pool, stmt: Statement, params: dict[str, Any]) -> Any:
    async with pool.acquire() as conn:
        return await conn.fetchrow(stmt.sql, *stmt.args(params))


async def lifecycle(
    pool: asyncpg.Pool, rng: random.Random, pipelines_n: int, prefix: str, lat: Any
) -> None:
    async def timed(route: str, stmt: Statement, params: dict[str, Any]) -> Any:
        started = time.perf_counter()
        row = await one(pool, stmt, params)
        lat[route].append(time.perf_counter() - started)
        return row

    now = datetime.now(UTC)
    name = f"{prefix}_{rng.randrange(pipelines_n):05d}"
    p = await timed(
        "/pipeline",
        UPSERT,
        {
            "type_name": prefix,
            "name": name,
            "next_watermark": now.isoformat(),
            "now": now,
            "rule_metrics": list(ANOMALY_METRICS),
        },
    )
    if p is None:  # unchanged pipeline: Watcher reads it back; never happens here
        raise RuntimeError("upsert returned no row")
    start = datetime.now(UTC)
    e = await timed(
        "/start_pipeline_execution",
        START,
        {"pipeline_id": p["id"], "start_date": start, "hour": start.hour, "day": start.date()},
    )
    rows = [rng.randrange(1000) for _ in range(3)]
    end = datetime.now(UTC)
    await timed(
        "/end_pipeline_execution",
        END,
        {
            "id": e["id"],
            "end_date": end,
            "now": end,
            "ok": rng.random() < 0.95,
            "inserts": rows[0],
            "updates": rows[1],
            "soft_deletes": rows[2],
            "total_rows": sum(rows) + rng.randrange(10_000),
        },
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    pool = await asyncpg.create_pool(
        args.dsn,
        min_size=min(args.concurrency, args.pool),
        max_size=min(args.concurrency, args.pool),
    )
    latencies: dict[str, list[float]] = defaultdict(list)
    scratch: dict[str, list[float]] = defaultdict(list)
    count = {"lifecycles": 0, "errors": 0}
    recording = False
    stop_at = time.monotonic() + args.warmup + args.duration

    async def client(seed: int) -> None:
        rng = random.Random(seed)
        while time.monotonic() < stop_at:
            lat = latencies if recording else scratch
            try:
                await lifecycle(pool, rng, args.pipelines, args.prefix, lat)
            except (asyncpg.PostgresError, RuntimeError, TypeError):
                count["errors"] += recording
                continue
            count["lifecycles"] += recording

    tasks = [asyncio.create_task(client(i)) for i in range(args.concurrency)]
    await asyncio.sleep(args.warmup)
    recording = True
    mark("start")
    cpu0, wall0 = time.process_time(), time.monotonic()
    await asyncio.sleep(max(0.0, stop_at - time.monotonic()))
    recording = False
    wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
    mark("stop")
    await asyncio.gather(*tasks)
    await pool.close()
    return {
        "concurrency": args.concurrency,
        "connections": min(args.concurrency, args.pool),
        "seconds": round(wall, 3),
        "lifecycles": count["lifecycles"],
        "lifecycles_per_s": round(count["lifecycles"] / wall, 1),
        "errors": count["errors"],
        "routes": {route: latency_summary(v) for route, v in sorted(latencies.items())},
        "generator_cpu_cores": round(cpu / wall, 3),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", required=True, help="postgresql://… (no +driver)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--pool", type=int, default=20, help="Watcher's pool size + overflow")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--pipelines", type=int, default=200)
    parser.add_argument("--prefix", default="bench")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        result = asyncio.run(run(args))
    else:
        result = uvloop.run(run(args))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
