"""Generate the blocking client from the asyncio one: `_async.py` → `_sync.py`.

The sync client is not kept by hand (httpcore's scripts/unasync.py is the model): this
script rewrites the async source token by token, then lets ruff sort the imports and
format the result. `--check` exits 1 when `_sync.py` is not what the source generates.

    python scripts/unasync.py          # regenerate
    python scripts/unasync.py --check  # in `make lint` / `make test`
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "clients/python/src/watcher_client"
SOURCE = PACKAGE / "_async.py"
TARGET = PACKAGE / "_sync.py"

# Whole-token substitutions, applied in order (regex, replacement).
SUBS: list[tuple[str, str]] = [
    (r"\n# The source of _sync.py: [^\n]*\n", "\n"),
    (r"\basync def __aenter__\b", "def __enter__"),
    (r"\basync def __aexit__\b", "def __exit__"),
    (r"\basync def\b", "def"),
    (r"\basync with\b", "with"),
    (r"\basync for\b", "for"),
    (r"\bawait ", ""),
    (r"\b__aenter__\b", "__enter__"),
    (r"\b__aexit__\b", "__exit__"),
    (r"\baclose\b", "close"),
    (r"\bimport asyncio\b", "import time"),
    (r"\basyncio\.sleep\b", "time.sleep"),
    (r"\bAwaitable\[None\]", "None"),
    (r"\bAwaitable, ", ""),
    (r"\bhttpx\.AsyncBaseTransport\b", "httpx.BaseTransport"),
    (r"\bhttpx\.AsyncClient\b", "httpx.Client"),
    (r"\bAsyncWatcherClient\b", "WatcherClient"),
    (r"\bAsyncTrack\b", "Track"),
    (r"\bAsyncRun\b", "Run"),
    (r"\bAn asyncio Watcher client\b", "A blocking Watcher client"),
    (r"\basyncio\b", "blocking"),
]

HEADER = "# Generated from _async.py by scripts/unasync.py: edit that file, then run the script.\n"


def unasync(text: str) -> str:
    for pattern, replacement in SUBS:
        text = re.sub(pattern, replacement, text)
    return HEADER + text


def _ruff(args: list[str], text: str) -> str:
    ruff = Path(sys.executable).with_name("ruff")
    command = [str(ruff) if ruff.exists() else "ruff", *args, "--stdin-filename", str(TARGET)]
    done = subprocess.run(command, input=text, capture_output=True, text=True, check=False)
    if done.returncode not in (0, 1) or not done.stdout:
        raise SystemExit(f"unasync: {' '.join(command)} failed:\n{done.stderr}")
    return done.stdout


def generate(source: str) -> str:
    text = unasync(source)
    text = _ruff(["check", "--select", "I,F401", "--fix-only", "--exit-zero", "-"], text)
    return _ruff(["format", "-"], text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if _sync.py is stale")
    parser.add_argument("--source", type=Path, default=SOURCE)
    parser.add_argument("--target", type=Path, default=TARGET)
    args = parser.parse_args(argv)
    expected = generate(args.source.read_text())
    current = args.target.read_text() if args.target.exists() else ""
    if args.check:
        if current != expected:
            print(f"{args.target} is stale: run python scripts/unasync.py", file=sys.stderr)
            return 1
        return 0
    if current != expected:
        args.target.write_text(expected)
        print(f"wrote {args.target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
