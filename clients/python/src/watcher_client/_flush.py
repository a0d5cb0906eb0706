"""Replaying the spool: the blocking sender, the background flusher, `watcher-client flush`.

Both clients flush from a daemon thread with a blocking `httpx.Client` (the spool is plain
file I/O, so the async client's event loop never waits on it). The thread wakes every
`interval` seconds, or at once when a call to Watcher succeeds, and exits once the spool
directory is empty.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

from watcher_client import _http
from watcher_client._spool import DEFAULT_MAX_BYTES, Flushed, Send, Spool, default_directory

logger = logging.getLogger("watcher_client")

DEFAULT_INTERVAL = 30.0
LOOK_SECONDS = 5.0
OFF = {"0", "false", "no", "off"}


def http_sender(http: httpx.Client) -> Send:
    """One request per call, no retries: an outage ends this flush, the next one resumes."""

    def send(method: str, path: str, body: Mapping[str, Any]) -> Any:
        headers = {"Content-Type": "application/json"}
        try:
            response = http.request(method, path, content=_http.encode(body), headers=headers)
        except _http.REQUEST_ERRORS as exc:
            raise _http.request_error(exc) from exc
        if not response.is_success:
            raise _http.response_error(response)
        return _http.decode(response)

    return send


def blocking_http(settings: _http.Settings) -> httpx.Client:
    return httpx.Client(
        base_url=settings.base_url, headers=settings.headers(), timeout=settings.timeout
    )


def spool_from_env(
    enabled: bool | None,
    directory: str | os.PathLike[str] | None,
    env: Mapping[str, str],
    base_url: str,
) -> Spool | None:
    """The client's spool: on unless `spool=False` or WATCHER_SPOOL=off."""
    if enabled is False or (enabled is None and env.get("WATCHER_SPOOL", "").lower() in OFF):
        return None
    path = Path(directory) if directory is not None else default_directory(env, base_url)
    max_bytes = int(env.get("WATCHER_SPOOL_MAX_BYTES") or DEFAULT_MAX_BYTES)
    return Spool(path, max_bytes=max_bytes)


class Background:
    """A daemon thread flushing `spool` while the directory holds spooled lines."""

    def __init__(
        self,
        spool: Spool,
        settings: _http.Settings,
        interval: float = DEFAULT_INTERVAL,
        on_flush: Callable[[Flushed], None] | None = None,
    ) -> None:
        self.spool = spool
        self.settings = settings
        self.interval = interval
        self.on_flush = on_flush
        self._wake = threading.Event()
        self._mutex = threading.Lock()
        self._thread: threading.Thread | None = None
        self._next_look = 0.0

    def spooled(self) -> None:
        """A line was just spooled: keep flushing every interval, and look after a success."""
        self._next_look = 0.0
        self._start()

    def succeeded(self) -> None:
        """A call to Watcher just worked: flush now if the directory holds lines (looked at
        most every few seconds, so a healthy client pays one listdir per LOOK_SECONDS)."""
        now = time.monotonic()
        if now < self._next_look:
            return
        self._next_look = now + LOOK_SECONDS
        if self.spool.pending():
            self.kick()

    def kick(self) -> None:
        """Flush soon (now, unless a flush is running); start the thread if it is not."""
        self._wake.set()
        self._start()

    def _start(self) -> None:
        with self._mutex:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="watcher-spool-flush", daemon=True
                )
                self._thread.start()

    def _loop(self) -> None:
        with blocking_http(self.settings) as http:
            send = http_sender(http)
            while True:
                self._wake.wait(self.interval)
                self._wake.clear()
                try:
                    flushed = self.spool.flush(send)
                except OSError as exc:  # a spool directory gone read-only must not kill us
                    logger.error("watcher spool: flush of %s failed: %s", self.spool.directory, exc)
                    continue
                if flushed.sent or flushed.refused:
                    logger.info(
                        "watcher spool: replayed %d call(s), %d refused, %d left",
                        flushed.sent,
                        flushed.refused,
                        flushed.remaining,
                    )
                if self.on_flush is not None:
                    self.on_flush(flushed)
                with self._mutex:
                    if not self._wake.is_set() and not self.spool.pending():
                        self._thread = None
                        return


def flush(
    directory: str | os.PathLike[str] | None = None,
    *,
    base_url: str | None = None,
    token: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Flushed:
    """Replay the spool directory once (what `watcher-client flush` runs)."""
    env = os.environ if env is None else env
    settings = _http.Settings.resolve(base_url, token, None, env)
    spool = Spool(Path(directory) if directory else default_directory(env, settings.base_url))
    with blocking_http(settings) as http:
        return spool.flush(http_sender(http))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="watcher-client", description="Watcher's Python client: replay the local spool."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    cmd = commands.add_parser(
        "flush", help="replay the spooled calls (cron-able; exit 1 if any remain)"
    )
    cmd.add_argument(
        "--spool-dir",
        type=Path,
        default=None,
        help="default: WATCHER_SPOOL_DIR, else $XDG_STATE_HOME/watcher-client/spool/<host_port>",
    )
    cmd.add_argument("--url", default=None, help="Watcher's URL (default: WATCHER_URL)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    flushed = flush(args.spool_dir, base_url=args.url)
    return report(flushed)


def report(flushed: Flushed) -> int:
    """Print a flush's outcome; exit status 0 when nothing is left (or another flush holds
    the directory: it will send everything), 1 when calls remain."""
    if flushed.busy:
        print("another flush is running on this spool directory; nothing done")
        return 0
    print(f"replayed {flushed.sent}, refused {flushed.refused}, left {flushed.remaining}")
    for error in flushed.errors[-5:]:
        print(f"  {error}", file=sys.stderr)
    return 0 if flushed.remaining == 0 else 1
