"""A process appending to (or flushing) a shared spool directory, for test_client_spool.

python -m tests.spool_worker append DIR COUNT PREFIX
python -m tests.spool_worker flush DIR URL SECONDS
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from watcher_client._flush import http_sender
from watcher_client._spool import Spool


def append(directory: Path, count: int, prefix: str) -> None:
    spool = Spool(directory)
    for n in range(count):
        body = {
            "pipeline_name": "shared",
            "start_date": datetime.now(UTC).isoformat(),
            "run_id": f"{prefix}-{n}",
        }
        spool.append("start", "POST", "/start_pipeline_execution", body, run=f"{prefix}-{n}")


def flush(directory: Path, url: str, seconds: float) -> None:
    spool = Spool(directory)
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=url, timeout=30) as http:
        send = http_sender(http)
        while time.monotonic() < deadline:
            spool.flush(send)
            time.sleep(0.01)


if __name__ == "__main__":
    command, directory = sys.argv[1], Path(sys.argv[2])
    if command == "append":
        append(directory, int(sys.argv[3]), sys.argv[4])
    else:
        flush(directory, sys.argv[3], float(sys.argv[4]))
