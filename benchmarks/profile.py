"""py-spy on the running server: collapsed stacks to a file, and the heaviest frames."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any


def start(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("py-spy not installed (pip install -e '.[bench]'): no profile", file=sys.stderr)
        return None
    cmd = [spy, "record", "--pid", str(pid), "--duration", str(int(seconds) + 2)]
    cmd += ["--rate", "250", "--format", "raw", "--output", str(out), "--nonblocking"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def finish(spy: subprocess.Popen[bytes], out: Path, top: int = 25) -> dict[str, Any] | None:
    if spy.wait(120) != 0 or not out.exists():
        return None
    return summarise(out.read_text(), top)


def summarise(collapsed: str, top: int = 25) -> dict[str, Any]:
    """Inclusive share of samples per frame ("function (file)"), heaviest first."""
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():  # a frame name may span lines
            continue
        n = int(count)
        total += n
        for frame in {_short(f) for f in stack.split(";")}:
            inclusive[frame] += n
    return {
        "samples": total,
        "inclusive_percent": {
            frame: round(100 * n / total, 1) for frame, n in inclusive.most_common(top)
        }
        if total
        else {},
    }


def _short(frame: str) -> str:
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "lib/python3"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where.removeprefix('/work/main/')})"
