"""The real `watcher` command: embedded PostgreSQL by default, data kept across restarts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import free_port
from watcher import __version__


def run_watcher(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "watcher", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_ready(url: str, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"watcher exited: {proc.stdout.read() if proc.stdout else ''}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("watcher did not become ready")


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    return output


def test_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "watcher", "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == f"watcher {__version__}"


def test_serve_uses_embedded_postgres_and_keeps_data(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "WATCHER_DATA_DIR": str(tmp_path / "data"),
        "WATCHER_PORT": str(port),
        "WATCHER_AUTH_ENABLED": "false",
        "WATCHER_LOG_JSON": "true",
    }
    env.pop("WATCHER_DATABASE_URL", None)
    proc = run_watcher("serve", env=env)
    try:
        wait_ready(url, proc)
        created = httpx.post(f"{url}/pipeline", json={"name": "kept", "pipeline_type_name": "t"})
        assert created.status_code == 201
    finally:
        output = stop(proc)
    assert proc.returncode == 0, output
    assert str(tmp_path / "data") in output  # the data directory is printed at start-up
    assert '"route": "/pipeline"' in output or '"route":"/pipeline"' in output  # request log line
    assert not (tmp_path / "data" / "postmaster.pid").exists()  # embedded server stopped

    proc = run_watcher("serve", env=env)
    try:
        wait_ready(url, proc)
        again = httpx.post(f"{url}/pipeline", json={"name": "kept", "pipeline_type_name": "t"})
        assert again.status_code == 200 and again.json()["id"] == created.json()["id"]
    finally:
        stop(proc)


def test_serve_freezes_start_up_objects_so_full_collections_stay_short() -> None:
    import gc

    from watcher.cli.local import settle_gc

    before = gc.get_threshold()
    try:
        settle_gc()
        assert gc.get_freeze_count() > 10_000  # the imported modules at least
        assert gc.get_threshold()[0] == 20_000
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
