"""Closed-loop ingestion load against a running Watcher, in its own process.

Each of `--concurrency` clients loops over one lifecycle, the calls a pipeline makes on
every run: create-or-get its pipeline (with a new next_watermark) → start an execution →
end it with DML counts (95% succeed). Clients pick among `--pipelines` pipelines at random.

The HTTP client is a few lines over asyncio streams (keep-alive, Content-Length bodies) so
the generator's own CPU stays small; it reports that CPU so a saturated generator shows.
Prints one JSON document: lifecycles/s, requests/s, latency per route, errors by status.

    python -m benchmarks.loadgen --url http://127.0.0.1:8000 --concurrency 32 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import orjson

from benchmarks.stats import latency_summary

EXPECTED = {"/pipeline": (200, 201), "/start_pipeline_execution": (201,)}
EXPECTED["/end_pipeline_execution"] = (204,)


class HTTPConnection:
    """One keep-alive HTTP/1.1 connection; enough for Watcher's JSON responses."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = 0
        for line in lines[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        payload = await self.reader.readexactly(length) if length else b""
        return status, payload

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class Recorder:
    """Latencies per route and errors, only while `recording` is on (after the warm-up)."""

    def __init__(self) -> None:
        self.recording = False
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.errors: Counter[str] = Counter()
        self.lifecycles = 0

    def call(self, route: str, seconds: float, status: int) -> bool:
        ok = status in EXPECTED[route]
        if self.recording:
            self.latencies[route].append(seconds)
            if not ok:
                self.errors[f"{route} {status}"] += 1
        return ok


async def lifecycle(
    conn: HTTPConnection, rec: Recorder, rng: random.Random, pipelines: int, prefix: str
) -> None:
    async def post(route: str, body: dict[str, Any]) -> tuple[bool, bytes]:
        started = time.perf_counter()
        status, payload = await conn.request("POST", route, orjson.dumps(body))
        return rec.call(route, time.perf_counter() - started, status), payload

    name = f"{prefix}_{rng.randrange(pipelines):05d}"
    watermark = datetime.now(UTC).isoformat()
    ok, payload = await post(
        "/pipeline",
        {"name": name, "pipeline_type_name": prefix, "next_watermark": watermark},
    )
    if not ok:
        return
    ok, payload = await post(
        "/start_pipeline_execution", {"pipeline_id": orjson.loads(payload)["id"]}
    )
    if not ok:
        return
    rows = [rng.randrange(1000) for _ in range(3)]
    end = {
        "id": orjson.loads(payload)["id"],
        "completed_successfully": rng.random() < 0.95,
        "inserts": rows[0],
        "updates": rows[1],
        "soft_deletes": rows[2],
        "total_rows": sum(rows) + rng.randrange(10_000),
    }
    ok, _ = await post("/end_pipeline_execution", end)
    if ok and rec.recording:
        rec.lifecycles += 1


async def client(
    url: str, rec: Recorder, stop_at: float, seed: int, pipelines: int, prefix: str
) -> None:
    parts = urlsplit(url)
    conn = HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80)
    rng = random.Random(seed)
    try:
        while time.monotonic() < stop_at:
            try:
                await lifecycle(conn, rec, rng, pipelines, prefix)
            except (OSError, asyncio.IncompleteReadError, ValueError) as error:
                if rec.recording:
                    rec.errors[f"connection {type(error).__name__}"] += 1
                await conn.close()
                await asyncio.sleep(0.05)  # a refused connection must not become a busy loop
    finally:
        await conn.close()


def mark(event: str) -> None:
    """Tell the orchestrator when the measured window starts and stops (it meters CPU/RSS)."""
    sys.stdout.write(event + "\n")
    sys.stdout.flush()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    rec = Recorder()
    started = time.monotonic()
    stop_at = started + args.warmup + args.duration
    tasks = [
        asyncio.create_task(client(args.url, rec, stop_at, i, args.pipelines, args.prefix))
        for i in range(args.concurrency)
    ]
    await asyncio.sleep(args.warmup)
    rec.recording = True
    mark("start")
    cpu0, wall0 = time.process_time(), time.monotonic()
    await asyncio.sleep(max(0.0, stop_at - time.monotonic()))
    rec.recording = False
    wall = time.monotonic() - wall0
    cpu = time.process_time() - cpu0
    mark("stop")
    await asyncio.gather(*tasks)
    requests = sum(len(v) for v in rec.latencies.values())
    every = [s for v in rec.latencies.values() for s in v]
    return {
        "concurrency": args.concurrency,
        "seconds": round(wall, 3),
        "lifecycles": rec.lifecycles,
        "lifecycles_per_s": round(rec.lifecycles / wall, 1),
        "requests_per_s": round(requests / wall, 1),
        "errors": sum(rec.errors.values()),
        "errors_by_kind": dict(rec.errors),
        "routes": {route: latency_summary(v) for route, v in sorted(rec.latencies.items())},
        "all_requests": latency_summary(every),
        "generator_cpu_cores": round(cpu / wall, 3),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first")
    parser.add_argument("--pipelines", type=int, default=200)
    parser.add_argument("--prefix", default="bench", help="pipeline name prefix and type")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import uvloop  # comes with uvicorn[standard]; the cheapest loop for the generator
    except ImportError:  # pragma: no cover
        result = asyncio.run(run(args))
    else:
        result = uvloop.run(run(args))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
