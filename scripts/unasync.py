"""Generate the blocking client from the asyncio one: `_async/*.py` → `_sync/*.py`.

The sync client is not kept by hand (httpcore's scripts/unasync.py is the model): this
script rewrites every module of the async package token by token into its twin of the same
name, then lets ruff sort the imports and format the result. `--check` exits 1 when any
twin is not what its source generates, is missing, or has no source any more.

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
SOURCE = PACKAGE / "_async"
TARGET = PACKAGE / "_sync"

# Whole-token substitutions, applied in order (regex, replacement).
SUBS: list[tuple[str, str]] = [
    (r"\n# The source of _sync/: [^\n]*\n", "\n"),
    (r"\bwatcher_client\._async\b", "watcher_client._sync"),
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

HEADER = (
    "# Generated from _async/{name} by scripts/unasync.py: edit that file, then run the script.\n"
)


def unasync(text: str, name: str = "__init__.py") -> str:
    for pattern, replacement in SUBS:
        text = re.sub(pattern, replacement, text)
    return HEADER.format(name=name) + text


def _ruff(args: list[str], text: str, target: Path) -> str:
    ruff = Path(sys.executable).with_name("ruff")
    command = [str(ruff) if ruff.exists() else "ruff", *args, "--stdin-filename", str(target)]
    done = subprocess.run(command, input=text, capture_output=True, text=True, check=False)
    if done.returncode not in (0, 1) or not done.stdout:
        raise SystemExit(f"unasync: {' '.join(command)} failed:\n{done.stderr}")
    return done.stdout


def generate(source: str, name: str = "__init__.py") -> str:
    """The twin of `_async/<name>`, formatted as if it sat in `_sync/` whatever the target."""
    text = unasync(source, name)
    fix = ["check", "--select", "I,F401", "--fix-only", "--exit-zero", "-"]
    text = _ruff(fix, text, TARGET / name)
    return _ruff(["format", "-"], text, TARGET / name)


def twins(source: Path, target: Path) -> dict[Path, str]:
    """Every module the source package generates: target path → expected text."""
    return {
        target / module.name: generate(module.read_text(), module.name)
        for module in sorted(source.glob("*.py"))
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if any _sync/ module is stale")
    parser.add_argument("--source", type=Path, default=SOURCE, help="the async package folder")
    parser.add_argument("--target", type=Path, default=TARGET, help="the sync package folder")
    args = parser.parse_args(argv)
    if not args.check:
        args.target.mkdir(exist_ok=True)
    expected = twins(args.source, args.target)
    orphans = sorted(set(args.target.glob("*.py")) - set(expected))
    stale = [
        path for path, text in expected.items() if not path.exists() or path.read_text() != text
    ]
    if args.check:
        for path in stale:
            print(f"{path} is stale or missing: run python scripts/unasync.py", file=sys.stderr)
        for path in orphans:
            print(f"{path} is stale: it has no source in {args.source}", file=sys.stderr)
        return 1 if stale or orphans else 0
    for path in stale:
        path.write_text(expected[path])
        print(f"wrote {path}")
    for path in orphans:
        path.unlink()
        print(f"removed {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
