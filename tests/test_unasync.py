"""scripts/unasync.py: the blocking client is generated from the asyncio one, module by module."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts/unasync.py"
PACKAGE = ROOT / "clients/python/src/watcher_client"
SOURCE, TARGET = PACKAGE / "_async", PACKAGE / "_sync"
MODULES = sorted(path.name for path in SOURCE.glob("*.py"))


def _check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--check", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def _copy(folder: Path, into: Path) -> Path:
    shutil.copytree(folder, into, ignore=shutil.ignore_patterns("__pycache__"))
    return into


def test_the_client_is_split_into_several_modules_each_with_a_twin() -> None:
    assert len(MODULES) > 2
    assert MODULES == sorted(path.name for path in TARGET.glob("*.py"))


def test_the_committed_sync_client_is_what_the_async_source_generates() -> None:
    done = _check()
    assert done.returncode == 0, done.stderr


def test_a_copy_of_the_committed_twins_passes_the_check(tmp_path: Path) -> None:
    # The baseline for the tests below: outside the package the output is the same.
    target = _copy(TARGET, tmp_path / "_sync")
    done = _check("--source", str(SOURCE), "--target", str(target))
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("module", MODULES)
def test_the_check_fails_when_any_twin_is_edited_by_hand(tmp_path: Path, module: str) -> None:
    target = _copy(TARGET, tmp_path / "_sync")
    (target / module).write_text((target / module).read_text() + "# edited by hand\n")
    done = _check("--source", str(SOURCE), "--target", str(target))
    assert done.returncode == 1
    assert f"{module} is stale" in done.stderr


@pytest.mark.parametrize("module", MODULES)
def test_the_check_fails_when_any_twin_is_missing(tmp_path: Path, module: str) -> None:
    target = _copy(TARGET, tmp_path / "_sync")
    (target / module).unlink()
    done = _check("--source", str(SOURCE), "--target", str(target))
    assert done.returncode == 1
    assert f"{module} is stale or missing" in done.stderr


def test_the_check_fails_on_a_twin_whose_source_is_gone(tmp_path: Path) -> None:
    target = _copy(TARGET, tmp_path / "_sync")
    (target / "_orphan.py").write_text("")
    done = _check("--source", str(SOURCE), "--target", str(target))
    assert done.returncode == 1
    assert "_orphan.py is stale: it has no source" in done.stderr


@pytest.mark.parametrize("module", MODULES)
def test_the_check_fails_when_any_async_module_changes_without_regenerating(
    tmp_path: Path, module: str
) -> None:
    source = _copy(SOURCE, tmp_path / "_async")
    (source / module).write_text((source / module).read_text() + "\nCHANGED = True\n")
    done = _check("--source", str(source), "--target", str(TARGET))
    assert done.returncode == 1
    assert f"{module} is stale" in done.stderr


def test_regenerating_writes_every_twin_and_removes_orphans(tmp_path: Path) -> None:
    target = tmp_path / "_sync"
    target.mkdir()
    (target / "_orphan.py").write_text("")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--source", str(SOURCE), "--target", str(target)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "removed" in done.stdout
    for module in MODULES:
        assert (target / module).read_text() == (TARGET / module).read_text(), module
    assert not (target / "_orphan.py").exists()


def test_the_generated_client_is_blocking() -> None:
    for module in MODULES:
        text = (TARGET / module).read_text()
        assert "async " not in text and "await " not in text and "asyncio" not in text, module
        assert "watcher_client._async" not in text, module
    client = (TARGET / "_client.py").read_text()
    assert "class WatcherClient(" in client and "def __enter__" in client
