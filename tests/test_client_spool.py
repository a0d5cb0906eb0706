"""The client's spool: runs an outage made impossible are kept on disk and replayed once.

Real files, real processes, a real Watcher: a client pointed at a closed port spools, a flush
against the live server replays, and the rows in PostgreSQL are counted.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from watcher_client import AsyncWatcherClient, RetryPolicy, Spooled, WatcherClient
from watcher_client._errors import WatcherUnavailable
from watcher_client._flush import http_sender
from watcher_client._spool import Spool, read_lines

from tests.conftest import LiveServer

ROOT = Path(__file__).resolve().parent.parent
NO_RETRY = RetryPolicy(retries=0)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def down_client(spool_dir: Path) -> WatcherClient:
    return WatcherClient(closed_port_url(), retry=NO_RETRY, env={}, spool_dir=spool_dir)


def flush(live: LiveServer, spool_dir: Path) -> Any:
    with httpx.Client(base_url=live.url, timeout=30) as http:
        return Spool(spool_dir).flush(http_sender(http))


def executions(live: LiveServer) -> list[dict[str, Any]]:
    return live.sql("SELECT * FROM pipeline_execution ORDER BY id")


def spooled(spool_dir: Path) -> list[dict[str, Any]]:
    return [e for p in sorted(spool_dir.glob("*.jsonl")) for e in read_lines(p)]


def test_a_run_watcher_missed_is_replayed_once_with_its_own_times(
    live: LiveServer, tmp_path: Path
) -> None:
    with down_client(tmp_path) as client, client.track("orders", "extraction") as run:
        run.inserts = 7
    assert run.spooled and not run.tracked
    assert [e["kind"] for e in spooled(tmp_path)] == ["pipeline", "start", "end"]
    started = run._started_at
    time.sleep(0.05)  # the replay happens later than the run: its times must not move

    result = flush(live, tmp_path)

    assert (result.sent, result.refused, result.remaining) == (3, 0, 0)
    [row] = executions(live)
    assert row["run_id"] == run.run_id and row["inserts"] == 7
    assert row["completed_successfully"] is True
    assert row["start_date"] == started
    assert spooled(tmp_path) == [] and not Spool(tmp_path).pending()


def test_replaying_the_same_lines_twice_stores_each_run_once(
    live: LiveServer, tmp_path: Path
) -> None:
    # A flusher that crashes after sending but before deleting leaves its claimed file
    # behind: the next flush sends it all again.
    with down_client(tmp_path) as client:
        for n in range(3):
            with client.track(f"p{n}", "extraction") as run:
                run.inserts = n
    [file] = tmp_path.glob("*.jsonl")
    shutil.copy(file, tmp_path / "left-by-a-crashed-flusher.replaying")
    assert flush(live, tmp_path).sent == 18
    rows = executions(live)
    assert sorted(r["run_id"] for r in rows) == sorted({r["run_id"] for r in rows})
    assert len(rows) == 3 and all(r["end_date"] is not None for r in rows)


def test_an_end_spooled_after_its_start_was_replayed_lands_on_that_execution(
    live: LiveServer, tmp_path: Path
) -> None:
    with down_client(tmp_path) as client:
        track = client.track("orders", "extraction")
        run = track.__enter__()
        assert flush(live, tmp_path).sent == 2  # pipeline + start, by another flush
        [started] = executions(live)
        assert started["end_date"] is None
        run.inserts = 3
        track.__exit__(None, None, None)
    assert flush(live, tmp_path).sent == 1
    [row] = executions(live)
    assert (row["id"], row["inserts"], row["completed_successfully"]) == (started["id"], 3, True)


def test_an_end_whose_start_is_still_spooled_is_replayed_after_it(
    live: LiveServer, tmp_path: Path
) -> None:
    with down_client(tmp_path) as client:
        with client.track("parent", "extraction") as run:
            with run.child("child") as child:
                child.inserts = 1
    kinds = [(e["kind"], e["run"]) for e in spooled(tmp_path)]
    assert kinds.index(("end", child.run_id)) > kinds.index(("start", child.run_id))
    assert flush(live, tmp_path).remaining == 0
    rows = {r["run_id"]: r for r in executions(live)}
    assert rows[child.run_id]["parent_id"] == rows[run.run_id]["id"]
    assert all(r["completed_successfully"] for r in rows.values())


def test_an_outage_during_the_flush_keeps_the_rest_in_order(
    live: LiveServer, tmp_path: Path
) -> None:
    with down_client(tmp_path) as client:
        for n in range(4):
            with client.track(f"p{n}", "extraction"):
                pass
    sent: list[str] = []
    with httpx.Client(base_url=live.url, timeout=30) as http:
        real = http_sender(http)

        def send(method: str, path: str, body: Mapping[str, Any]) -> Any:
            if len(sent) == 5:
                raise WatcherUnavailable("ConnectError: watcher went away again")
            sent.append(path)
            return real(method, path, body)

        result = Spool(tmp_path).flush(send)
    assert (result.sent, result.remaining) == (5, 7)
    left = spooled(tmp_path)
    assert [e["kind"] for e in left] == ["end"] + ["pipeline", "start", "end"] * 2
    assert flush(live, tmp_path).remaining == 0
    rows = executions(live)
    assert len(rows) == 4 and all(r["end_date"] is not None for r in rows)


def test_a_line_watcher_refuses_is_dropped_loudly_and_does_not_block_the_rest(
    live: LiveServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path)
    spool.append("start", "POST", "/start_pipeline_execution", {"pipeline_name": "nope"}, "r1")
    with down_client(tmp_path) as client, client.track("orders", "extraction"):
        pass
    result = flush(live, tmp_path)
    assert (result.sent, result.refused, result.remaining) == (3, 1, 0)
    assert "refused a spooled POST /start_pipeline_execution" in caplog.text
    assert len(executions(live)) == 1


def test_a_line_cut_short_by_a_crash_is_ignored_and_the_next_append_stays_whole(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path)
    spool.append("start", "POST", "/start_pipeline_execution", {"run_id": "a"}, "a")
    with open(spool.path, "ab") as out:  # what a process killed mid-write leaves
        out.write(b'{"v":1,"seq":2,"kind":"end","run":"a","meth')
    assert [e["run"] for e in read_lines(spool.path)] == ["a"]
    assert "truncated last line" in caplog.text
    spool.append("start", "POST", "/start_pipeline_execution", {"run_id": "b"}, "b")
    assert [e["run"] for e in read_lines(spool.path)] == ["a", "b"]


def test_a_full_spool_drops_the_oldest_whole_runs_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path, max_bytes=1500)
    body = {"pipeline_name": "p", "padding": "x" * 100}
    for n in range(8):
        spool.append("start", "POST", "/start_pipeline_execution", body, f"run{n}")
        spool.append("end", "POST", "/end_pipeline_execution", body, f"run{n}")
    caplog.set_level(logging.ERROR)
    assert spool.path.stat().st_size <= 1500
    entries = read_lines(spool.path)
    runs = [e["run"] for e in entries]
    assert runs == sorted(runs, key=lambda r: int(r[3:]))  # order kept
    assert runs[-1] == "run7"  # the newest survive
    for run in set(runs):  # never part of a run
        assert [e["kind"] for e in entries if e["run"] == run] == ["start", "end"]
    assert "spool FULL" in caplog.text and "dropped the 1 oldest whole run" in caplog.text
    dropped = sorted(spool.dropped)
    assert dropped and not spool.append("end", "POST", "/end", body, dropped[0])


def test_processes_sharing_a_directory_lose_and_duplicate_nothing(
    live: LiveServer, tmp_path: Path
) -> None:
    with httpx.Client(base_url=live.url) as http:
        http.post("/pipeline", json={"name": "shared", "pipeline_type_name": "t"})
    worker = [sys.executable, "-m", "tests.spool_worker"]
    flushers = [
        subprocess.Popen([*worker, "flush", str(tmp_path), live.url, "4"], cwd=ROOT)
        for _ in range(2)
    ]
    writers = [
        subprocess.Popen([*worker, "append", str(tmp_path), "60", f"w{n}"], cwd=ROOT)
        for n in range(4)
    ]
    assert all(p.wait(120) == 0 for p in writers + flushers)
    assert flush(live, tmp_path).remaining == 0
    rows = live.sql("SELECT run_id FROM pipeline_execution")
    assert len(rows) == 240
    assert {r["run_id"] for r in rows} == {f"w{n}-{i}" for n in range(4) for i in range(60)}


def test_raw_calls_are_spooled_too(live: LiveServer, tmp_path: Path) -> None:
    with httpx.Client(base_url=live.url) as http:
        pipeline = http.post("/pipeline", json={"name": "raw", "pipeline_type_name": "t"}).json()
        started = http.post("/start_pipeline_execution", json={"pipeline_id": pipeline["id"]})
    with down_client(tmp_path) as client:
        with pytest.raises(Spooled) as spooled_start:
            client.start_execution(pipeline["id"])
        client.end_execution(started.json()["id"], inserts=4)  # spooled, returns
    assert flush(live, tmp_path).sent == 2
    rows = {r["run_id"]: r for r in executions(live)}
    assert spooled_start.value.run_id in rows
    assert [r["inserts"] for r in rows.values() if r["id"] == started.json()["id"]] == [4]


def test_the_async_client_spools_and_a_later_success_flushes_in_the_background(
    live: LiveServer, tmp_path: Path
) -> None:
    async def outage_then_recovery() -> None:
        async with AsyncWatcherClient(
            closed_port_url(), retry=NO_RETRY, env={}, spool_dir=tmp_path
        ) as down:
            async with down.track("orders", "extraction") as run:
                run.inserts = 2
        assert run.spooled
        async with AsyncWatcherClient(live.url, env={}, spool_dir=tmp_path) as up:
            await up.heartbeat()  # the next successful call wakes the background flush
            for _ in range(100):
                if not Spool(tmp_path).pending():
                    break
                await asyncio.sleep(0.05)

    asyncio.run(outage_then_recovery())
    [row] = executions(live)
    assert (row["inserts"], row["completed_successfully"]) == (2, True)


def test_strict_runs_raise_instead_of_spooling(tmp_path: Path) -> None:
    with down_client(tmp_path) as client, pytest.raises(WatcherUnavailable):
        with client.track("orders", "extraction", strict=True):
            pass
    assert not Spool(tmp_path).pending()


def test_watcher_client_flush_is_a_cron_command(live: LiveServer, tmp_path: Path) -> None:
    with down_client(tmp_path) as client, client.track("orders", "extraction"):
        pass
    command = [sys.executable, "-m", "watcher_client", "flush", "--spool-dir", str(tmp_path)]
    down = subprocess.run([*command, "--url", closed_port_url()], capture_output=True, text=True)
    assert down.returncode == 1 and "left 3" in down.stdout
    up = subprocess.run([*command, "--url", live.url], capture_output=True, text=True)
    assert up.returncode == 0 and "replayed 3, refused 0, left 0" in up.stdout
    [row] = executions(live)
    assert row["end_date"] > row["start_date"]


def test_watcher_spool_flush_replays_the_directory(live: LiveServer, tmp_path: Path) -> None:
    with down_client(tmp_path) as client, client.track("orders", "extraction"):
        pass
    watcher = [str(Path(sys.executable).with_name("watcher")), "spool"]
    status = subprocess.run(
        [*watcher, "status", "--spool-dir", str(tmp_path)], capture_output=True, text=True
    )
    assert status.returncode == 0 and "3 spooled call(s) in 1 file(s)" in status.stdout
    done = subprocess.run(
        [*watcher, "flush", "--spool-dir", str(tmp_path), "--url", live.url],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and "replayed 3, refused 0, left 0" in done.stdout, done
    assert len(executions(live)) == 1
