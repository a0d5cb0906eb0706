"""The database a local command works on: WATCHER_DATABASE_URL, else the embedded server."""

from __future__ import annotations

import sys

from watcher.config import Settings
from watcher.db.embedded import EmbeddedPostgres, start_embedded


def database_url(settings: Settings) -> tuple[str, EmbeddedPostgres | None]:
    """The URL to use, starting the embedded server (returned, to be stopped) when none is
    configured."""
    if settings.database_url is not None:
        return settings.database_url.get_secret_value(), None
    embedded = start_embedded(settings.data_dir)
    print(f"watcher: embedded PostgreSQL, data directory {embedded.data_dir}", file=sys.stderr)
    return embedded.url, embedded
