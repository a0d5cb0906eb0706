"""scripts/unasync.py: the blocking client is generated from the asyncio one, and checked."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts/unasync.py"
PACKAGE = ROOT / "clients/python/src/watcher_client"


def _check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--check", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_committed_sync_client_is_what_the_async_source_generates() -> None:
    done = _check()
    assert done.returncode == 0, done.stderr


def test_the_check_fails_when_the_sync_client_is_edited_by_hand(tmp_path: Path) -> None:
    target = tmp_path / "_sync.py"
    shutil.copy(PACKAGE / "_sync.py", target)
    target.write_text(target.read_text().replace("def close(self)", "def shut(self)"))
    done = _check("--source", str(PACKAGE / "_async.py"), "--target", str(target))
    assert done.returncode == 1
    assert "stale" in done.stderr


def test_the_check_fails_when_the_async_source_changes_without_regenerating(
    tmp_path: Path,
) -> None:
    source = tmp_path / "_async.py"
    source.write_text(
        (PACKAGE / "_async.py").read_text().replace("retry: bool = True", "retry: bool = False")
    )
    done = _check("--source", str(source), "--target", str(PACKAGE / "_sync.py"))
    assert done.returncode == 1


def test_the_generated_client_is_blocking() -> None:
    text = (PACKAGE / "_sync.py").read_text()
    assert "async " not in text and "await " not in text and "asyncio" not in text
    assert "class WatcherClient:" in text and "def __enter__" in text
