"""`watcher spool flush|status`: the client's local spool, from a cron or by hand.

The spool belongs to the Python client (watcher_client._spool): the calls a pipeline could
not deliver while Watcher was down. `flush` replays them in order (idempotently) to
`--url`; `status` counts what waits. Both work on one spool directory.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from watcher_client import _flush
from watcher_client._http import Settings
from watcher_client._spool import CLAIMED, SUFFIX, default_directory, read_lines

EXIT_CODES = """exit codes:
  0  success (flush: nothing left; also when another flush holds the directory)
  1  flush: calls remain (Watcher still unreachable)
environment: WATCHER_URL, WATCHER_TOKEN, WATCHER_SPOOL_DIR, XDG_STATE_HOME"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    spool = sub.add_parser("spool", help="replay or inspect the client's local spool")
    actions = spool.add_subparsers(dest="spool_command", metavar="ACTION", required=True)
    flush = actions.add_parser("flush", help="replay spooled calls to Watcher (cron-able)")
    status = actions.add_parser("status", help="count the spooled calls per file")
    for parser in (spool, flush, status):
        parser.epilog = EXIT_CODES
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
    for parser in (flush, status):
        parser.add_argument("--url", help="Watcher's URL (env WATCHER_URL)")
        parser.add_argument(
            "--spool-dir",
            type=Path,
            help="default WATCHER_SPOOL_DIR, else $XDG_STATE_HOME/watcher-client/spool/<host_port>",
        )
    flush.add_argument("--token", help="API token (env WATCHER_TOKEN)")
    flush.set_defaults(func=cmd_flush)
    status.set_defaults(func=cmd_status)


def cmd_flush(args: argparse.Namespace) -> int:
    flushed = _flush.flush(args.spool_dir, base_url=args.url, token=args.token)
    return _flush.report(flushed)


def cmd_status(args: argparse.Namespace) -> int:
    directory = args.spool_dir or default_directory(
        os.environ, Settings.resolve(args.url, None, None, os.environ).base_url
    )
    files = sorted(
        p for p in directory.glob("*") if p.name.endswith((SUFFIX, CLAIMED)) and p.name[0] != "."
    )
    total = 0
    for path in files:
        entries = read_lines(path)
        total += len(entries)
        runs = len({e.get("run") for e in entries})
        print(f"{path.name}\t{len(entries)} calls\t{runs} runs\t{path.stat().st_size} bytes")
    print(f"{directory}: {total} spooled call(s) in {len(files)} file(s)")
    return 0
