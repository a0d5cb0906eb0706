"""The `watcher` command: serve, migrate (more commands register in `COMMANDS`)."""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys
from collections.abc import Callable, Iterator

from watcher import __version__
from watcher.cli import remote, spool, tokens
from watcher.cli.database import database_url
from watcher.config import Settings, load_settings

log = logging.getLogger("watcher.cli.local")

Command = Callable[[argparse.Namespace], int]


def settle_gc() -> None:
    """Freeze what start-up allocated and collect the young generation less often.

    Under ingestion load the cyclic collector ran a full collection every second or so over
    the ~120,000 objects of the imported modules and the app: 70-120 ms pauses of the event
    loop, every request in flight waiting (the p99). Frozen objects are never scanned again
    (`gc.freeze`), and a larger first threshold stops in-flight request objects from being
    promoted just because a collection caught them alive. Measured at c=32: full-collection
    time under load from ~900 ms per 16 s to ~0, young collections 10x fewer.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 10)


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(0)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from watcher.app import create_app
    from watcher.db import migrate
    from watcher.logs import setup_logging

    overrides = {k: v for k, v in {"host": args.host, "port": args.port}.items() if v is not None}
    settings = load_settings(**overrides)
    setup_logging(settings.log_level, settings.log_json)
    from watcher.auth import insecure_bind_refusal

    if (refusal := insecure_bind_refusal(settings)) is not None:
        print(f"watcher: {refusal}", file=sys.stderr)
        return 2
    url, embedded = database_url(settings)
    # uvicorn shuts down gracefully on SIGTERM and then re-raises the signal; exit through
    # Python instead of dying on it, so `finally` stops the embedded PostgreSQL server.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        migrate.upgrade(url)
        _hint_first_token(settings, url)
        app = create_app(settings, database_url=url)
        settle_gc()
        print(f"watcher: serving on http://{settings.host}:{settings.port}", file=sys.stderr)
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=30,
        )
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


def _hint_first_token(settings: Settings, url: str) -> None:
    """With auth on and no live token, say how to create the first admin token."""
    if not settings.auth_enabled:
        return
    import asyncio

    from watcher.auth import FIRST_TOKEN_HINT, count_live_tokens
    from watcher.db.engine import create_engine

    async def count() -> int:
        engine = create_engine(url, settings)
        try:
            async with engine.connect() as conn:
                return await count_live_tokens(conn)
        finally:
            await engine.dispose()

    if asyncio.run(count()) == 0:
        print(FIRST_TOKEN_HINT, file=sys.stderr)


def cmd_migrate(args: argparse.Namespace) -> int:
    from watcher.db import migrate

    settings = load_settings()
    url, embedded = database_url(settings)
    try:
        migrate.upgrade(url, args.revision)
        print(f"watcher: database migrated to {args.revision}", file=sys.stderr)
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


# For the commands that work on the database or serve it (serve, migrate, tokens); the API
# commands (watcher.cli.remote) carry their own, with exit code 3 for HTTP errors.
LOCAL_EXIT_CODES = """exit codes:
  0    success
  1    failure: the database failed, or tokens revoke found no live token with that id
  2    usage error (serve: a non-loopback --host while auth is off is refused)
  130  interrupted
environment: WATCHER_DATABASE_URL (else the embedded PostgreSQL in WATCHER_DATA_DIR)"""
TOP_EXIT_CODES = """exit codes (each command's --help has its own):
  0  success    1  a check found something, or a failure    2  usage error
  3  Watcher unreachable or an HTTP error (API commands)     130  interrupted"""


def parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """Every command and action parser below `parser` (not `parser` itself)."""
    for action in parser._subparsers._group_actions if parser._subparsers else ():
        for child in action.choices.values():  # type: ignore[union-attr]
            yield child
            yield from parsers(child)


def _with_exit_codes(parser: argparse.ArgumentParser) -> None:
    """Each --help ends with the exit codes: the commands' own, else the local commands'."""
    parser.epilog = TOP_EXIT_CODES
    for child in (parser, *parsers(parser)):
        child.epilog = child.epilog or LOCAL_EXIT_CODES
        child.formatter_class = argparse.RawDescriptionHelpFormatter


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="watcher", description="Watcher: pipeline observability.")
    parser.add_argument("--version", action="version", version=f"watcher {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = sub.add_parser("serve", help="run the HTTP service (embedded PostgreSQL by default)")
    serve.add_argument("--host", help="bind address (default 127.0.0.1, WATCHER_HOST)")
    serve.add_argument("--port", type=int, help="port (default 8000, WATCHER_PORT)")
    serve.set_defaults(func=cmd_serve)
    mig = sub.add_parser("migrate", help="apply database migrations")
    mig.add_argument("revision", nargs="?", default="head", help="target revision (default head)")
    mig.set_defaults(func=cmd_migrate)
    tokens.register(sub)
    remote.register(sub)
    spool.register(sub)
    _with_exit_codes(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
