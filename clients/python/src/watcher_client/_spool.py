"""The local spool: calls Watcher could not take, kept on disk and replayed later.

When Watcher is unreachable or answers 5xx/429 after the retries, the client appends the call
here instead of losing it, and the pipeline carries on. Layout and guarantees:

- One file per process, `<host>-<pid>-<token>.jsonl`, in one directory (WATCHER_SPOOL_DIR,
  else `$XDG_STATE_HOME/watcher-client/spool/<watcher host_port>`, XDG_STATE_HOME defaulting
  to ~/.local/state). One
  JSON object per line, written with O_APPEND under the file's flock and fsync'd. A line cut
  short by a crash has no newline and is ignored when read.
- Each line is one call of one run (`run`: the run_id the start carries). A start whose
  pipeline id is unknown names the pipeline instead; an end whose execution id is unknown
  carries its start, which is replayed first (the server answers a repeated run_id with the
  execution it already made), so an end always lands on its own execution.
- A file is bounded by `max_bytes`; when a line does not fit, the oldest whole runs of the
  file are dropped (logged as an error), never part of a run.
- `flush` takes the directory's flush.lock (one flusher at a time, others return at once),
  claims each file by renaming it under its flock, replays the lines in the order they were
  written (original timestamps are in the bodies), deletes what was sent, and writes back
  what an outage interrupted. A claimed file a crashed flusher left behind is replayed by
  the next one; replays are idempotent, so a crash costs a repeat, never a duplicate.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from watcher_client._errors import APIError, InvalidResponse, WatcherError, WatcherUnavailable

logger = logging.getLogger("watcher_client")

Entry = dict[str, Any]
# One HTTP call (method, path, body) → the decoded answer; raises WatcherError.
Send = Callable[[str, str, Mapping[str, Any]], Any]

DEFAULT_MAX_BYTES = 16 * 1024 * 1024
SUFFIX = ".jsonl"
CLAIMED = ".replaying"
LOCK_NAME = "flush.lock"


def fallback_state_home() -> Path:
    return Path.home() / ".local" / "state"


def default_directory(env: Mapping[str, str], base_url: str) -> Path:
    """WATCHER_SPOOL_DIR as given, else a directory per Watcher URL under the state home (a
    worker reporting to two Watchers must never replay one's runs into the other)."""
    if env.get("WATCHER_SPOOL_DIR"):
        return Path(env["WATCHER_SPOOL_DIR"])
    state = Path(env["XDG_STATE_HOME"]) if env.get("XDG_STATE_HOME") else fallback_state_home()
    slug = re.sub(r"[^A-Za-z0-9.-]+", "_", base_url.split("://", 1)[-1]).strip("_")
    return state / "watcher-client" / "spool" / (slug or "default")


def spoolable(error: WatcherError) -> bool:
    """An outage, not a refusal: unreachable, 5xx or 429 (what the retries gave up on)."""
    if isinstance(error, APIError):
        return error.status_code == 429 or error.status_code >= 500
    return isinstance(error, WatcherUnavailable) and error.retryable


@dataclass
class Flushed:
    """What one flush did: lines sent, dropped as refused, and left for the next flush."""

    sent: int = 0
    refused: int = 0
    remaining: int = 0
    busy: bool = False
    errors: list[str] = field(default_factory=list)


def _encode(entry: Entry) -> bytes:
    return (json.dumps(entry, default=str, separators=(",", ":")) + "\n").encode()


def read_lines(path: Path) -> list[Entry]:
    """The entries of one file; a truncated or unreadable line is skipped with a warning."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    entries: list[Entry] = []
    lines = data.split(b"\n")
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        if number == len(lines):  # no newline after it: an append a crash cut short
            logger.warning("watcher spool: ignoring a truncated last line in %s", path)
            continue
        try:
            entry = json.loads(raw)
        except ValueError:
            logger.warning("watcher spool: ignoring an unreadable line %d in %s", number, path)
            continue
        if isinstance(entry, dict) and isinstance(entry.get("path"), str):
            entries.append(entry)
    return entries


@contextmanager
def _locked(path: Path, flags: int = os.O_RDWR | os.O_CREAT) -> Iterator[int]:
    """An fd on `path` under an exclusive flock, checked to still be the file at `path`."""
    while True:
        fd = os.open(path, flags, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                current = os.stat(path).st_ino
            except FileNotFoundError:
                current = -1
            if current == os.fstat(fd).st_ino:
                yield fd
                return
        finally:
            os.close(fd)
        # renamed (claimed by a flusher) or rewritten between open and lock: open again


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomically(path: Path, entries: list[Entry]) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as out:
        for entry in entries:
            out.write(_encode(entry))
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _runs_oldest_first(entries: list[Entry]) -> list[list[Entry]]:
    runs: dict[str, list[Entry]] = {}
    for number, entry in enumerate(entries):
        runs.setdefault(entry.get("run") or f"call-{number}", []).append(entry)
    return list(runs.values())


class Spool:
    """This process's spool file in `directory`, and the flush of the whole directory."""

    def __init__(self, directory: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}{SUFFIX}"
        self.path = directory / name
        self.dropped: set[str] = set()
        self._seq = 0
        self._mutex = threading.Lock()

    # -- appending ---------------------------------------------------------------------------

    def append(
        self, kind: str, method: str, path: str, body: Any, run: str | None = None, **extra: Any
    ) -> bool:
        """Write one call durably; False when its run was dropped for room (then nothing is)."""
        with self._mutex:
            if run is not None and run in self.dropped:
                logger.error(
                    "watcher spool: run %s was dropped for room; not spooling its %s", run, kind
                )
                return False
            self._seq += 1
            entry: Entry = {
                "v": 1,
                "seq": self._seq,
                "at": datetime.now(UTC).isoformat(),
                "kind": kind,
                "run": run,
                "method": method,
                "path": path,
                "body": body,
                **extra,
            }
            line = _encode(entry)
            self.directory.mkdir(parents=True, exist_ok=True)
            with _locked(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND) as fd:
                size = os.fstat(fd).st_size
                if size + len(line) <= self.max_bytes:
                    self._write(fd, line, size)
                    return True
                return self._make_room(entry)

    def _write(self, fd: int, line: bytes, size: int) -> None:
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line  # a previous append was cut short: keep this line whole
        os.write(fd, line)
        os.fsync(fd)
        if size == 0:
            _fsync_dir(self.directory)

    def _make_room(self, entry: Entry) -> bool:
        """Drop the oldest whole runs (the new line's own included) until the file fits.

        Called with the file locked; the kept lines are rewritten in one atomic replace.
        """
        runs = _runs_oldest_first([*read_lines(self.path), entry])
        sizes = [sum(len(_encode(e)) for e in run) for run in runs]
        dropped = 0
        while runs and sum(sizes) > self.max_bytes:
            key = runs.pop(0)[0].get("run")
            sizes.pop(0)
            dropped += 1
            if key:
                self.dropped.add(key)
        logger.error(
            "watcher spool FULL (%s holds at most %d bytes): dropped the %d oldest whole "
            "run(s) to make room; flush it (`watcher-client flush`) or raise "
            "WATCHER_SPOOL_MAX_BYTES",
            self.path,
            self.max_bytes,
            dropped,
        )
        kept = [e for run in runs for e in run]
        _write_atomically(self.path, kept)
        return any(e is entry for e in kept)

    # -- flushing ----------------------------------------------------------------------------

    def pending(self) -> bool:
        try:
            return any(
                p.name.endswith((SUFFIX, CLAIMED)) and not p.name.startswith(".")
                for p in self.directory.iterdir()
            )
        except FileNotFoundError:
            return False

    def flush(self, send: Send) -> Flushed:
        return flush_directory(self.directory, send)


def _claim(directory: Path) -> list[Path]:
    claimed = sorted(directory.glob(f"*{CLAIMED}"))  # left by a flusher that died
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        if path.name.startswith("."):
            continue
        target = path.with_name(f"{path.stem}.{uuid.uuid4().hex[:8]}{CLAIMED}")
        try:
            with _locked(path, os.O_RDWR):
                os.rename(path, target)
        except FileNotFoundError:
            continue
        claimed.append(target)
    return claimed


def flush_directory(directory: Path, send: Send) -> Flushed:
    """Replay every spooled call in `directory` (see the module docstring)."""
    result = Flushed()
    if not directory.exists():
        return result
    lock_fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            result.busy = True
            return result
        claimed = _claim(directory)
        entries = sorted(
            ((e, i, n) for i, p in enumerate(claimed) for n, e in enumerate(read_lines(p))),
            key=lambda t: (str(t[0].get("at", "")), t[1], t[2]),
        )
        ordered = [e for e, _, _ in entries]
        remaining = _replay(ordered, send, result)
        if remaining:
            name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}{SUFFIX}"
            _write_atomically(directory / name, remaining)
        for path in claimed:
            path.unlink(missing_ok=True)
        result.remaining = len(remaining)
        return result
    finally:
        os.close(lock_fd)


def _replay(entries: list[Entry], send: Send, result: Flushed) -> list[Entry]:
    executions: dict[str, int] = {}  # run → execution id, as this flush resolved it
    for index, entry in enumerate(entries):
        try:
            _send_one(entry, send, executions)
        except WatcherError as error:
            if spoolable(error):
                result.errors.append(str(error))
                return entries[index:]
            result.refused += 1
            result.errors.append(str(error))
            logger.error(
                "watcher spool: Watcher refused a spooled %s %s (%s); dropping it: %s",
                entry.get("method"),
                entry.get("path"),
                entry.get("kind"),
                error,
            )
            continue
        result.sent += 1
    return []


def _send_one(entry: Entry, send: Send, executions: dict[str, int]) -> None:
    body: dict[str, Any] = dict(entry.get("body") or {})
    kind, run = entry.get("kind"), entry.get("run")
    if kind == "end" and body.get("id") is None:
        body["id"] = _execution(run, entry.get("start"), send, executions)
    if kind == "start" and entry.get("parent_run") and body.get("parent_id") is None:
        body["parent_id"] = _execution(
            entry["parent_run"], entry.get("parent_start"), send, executions
        )
    answer = send(str(entry["method"]), str(entry["path"]), body)
    if kind == "start" and run and isinstance(answer, dict):
        executions[run] = int(answer["id"])


def _execution(run: Any, start: Any, send: Send, executions: dict[str, int]) -> int:
    """The execution id of a spooled run's start, as this flush or the server knows it."""
    if isinstance(run, str) and run in executions:
        return executions[run]
    if not isinstance(start, dict):
        raise InvalidResponse(f"spooled line of run {run!r} has no start to resolve")
    # Its start was replayed by an earlier flush: the server answers a start with a known
    # run_id with the execution it already made (never a second one).
    answer = send("POST", "/start_pipeline_execution", start)
    execution_id = int(answer["id"])
    if isinstance(run, str):
        executions[run] = execution_id
    return execution_id
