"""What the remote commands print: progress lines on stderr, fixed-width tables and JSON on
stdout."""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

CELL = 48
Row = dict[str, Any]


def status(message: str) -> None:
    print(f"watcher: {message}", file=sys.stderr, flush=True)


@contextmanager
def ticking(message: str, every: float = 5.0) -> Iterator[None]:
    """Say what is being waited for, then how long, every few seconds, until it finishes."""
    status(message)
    done = threading.Event()
    started = datetime.now(UTC)

    def tick() -> None:
        while not done.wait(every):
            elapsed = (datetime.now(UTC) - started).total_seconds()
            status(f"still working ({elapsed:.0f} s)…")

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


# --- rendering ---------------------------------------------------------------------------


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.1f}"
    text = str(value)
    if re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", text):
        text = text[:19].replace("T", " ")
    return text if len(text) <= CELL else text[: CELL - 1] + "…"


def table(rows: Sequence[Row], columns: Sequence[tuple[str, str]], out: TextIO) -> None:
    """Aligned columns; `columns` are (key, heading)."""
    cells = [[cell(r.get(key)) for key, _ in columns] for r in rows]
    widths = [max([len(h), *(len(c[i]) for c in cells)]) for i, (_, h) in enumerate(columns)]
    print(
        "  ".join(h.upper().ljust(w) for (_, h), w in zip(columns, widths, strict=True)), file=out
    )
    for line in cells:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip(), file=out)


def emit_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def execution_status(row: Row) -> str:
    ok = row.get("completed_successfully")
    return "running" if ok is None else "succeeded" if ok else "failed"
