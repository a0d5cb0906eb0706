"""The asyncio client, split by resource; its blocking twin `_sync/` is generated from it."""

# The source of _sync/: scripts/unasync.py generates it (its --check runs in `make lint`).

from __future__ import annotations

from watcher_client._async._client import AsyncWatcherClient

__all__ = ["AsyncWatcherClient"]
