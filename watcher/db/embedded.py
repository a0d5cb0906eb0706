"""The embedded PostgreSQL server (the `pgserver` package), Watcher's default database.

pgserver ships PostgreSQL binaries in a wheel; the server listens on a Unix socket inside the
data directory, so it needs no port and no root. Its data survives restarts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("watcher.db.embedded")

DATABASE = "watcher"


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    server: Any

    @property
    def url(self) -> str:
        socket_dir = self.server.get_uri().split("host=", 1)[1]
        return f"postgresql://postgres@/{DATABASE}?host={socket_dir}"

    def stop(self) -> None:
        cleanup = getattr(self.server, "cleanup", None)
        if cleanup is not None:
            cleanup()


def start_embedded(data_dir: Path) -> EmbeddedPostgres:
    """Start (or attach to) the server in `data_dir` and make sure the database exists."""
    import pgserver

    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(str(data_dir), cleanup_mode="stop")
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}';")
    if "1 row" not in exists:
        server.psql(f"CREATE DATABASE {DATABASE};")
    log.info("embedded postgresql ready", extra={"data_dir": str(data_dir)})
    return EmbeddedPostgres(data_dir=data_dir, server=server)
