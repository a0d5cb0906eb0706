"""What the figures came from: the machine, the versions, and how busy the box already was."""

from __future__ import annotations

import os
import platform
import subprocess
import threading
from pathlib import Path
from typing import Any

import psutil


def describe(pg_version: str | None) -> dict[str, Any]:
    return {
        "cpu_cores": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "postgresql": pg_version,
        "os": f"{platform.system()} {platform.release()}",
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "watcher_commit": _commit(),
    }


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


class CpuMeter:
    """CPU seconds used by a process tree between `start()` and `stop()`, as cores."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self._before: dict[int, float] = {}
        self._wall = 0.0

    def _tree(self) -> dict[int, float]:
        if self.pid is None:
            return {}
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return {}
        used: dict[int, float] = {}
        for proc in procs:
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            used[proc.pid] = times.user + times.system
        return used

    def start(self, wall: float) -> None:
        self._before, self._wall = self._tree(), wall

    def stop(self, wall: float) -> float | None:
        if self.pid is None:
            return None
        after = self._tree()
        spent = sum(t - self._before.get(pid, 0.0) for pid, t in after.items())
        return round(spent / max(wall - self._wall, 1e-9), 3)


def rss_mb(pid: int) -> float:
    return round(psutil.Process(pid).memory_info().rss / 2**20, 1)


class RssSampler:
    """The largest RSS of a process, sampled every `interval` seconds in a thread."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self.pid, self.interval = pid, interval
        self.max_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.max_mb = max(self.max_mb, rss_mb(self.pid))
            except psutil.Error:
                return

    def start(self) -> None:
        self.max_mb = rss_mb(self.pid)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
