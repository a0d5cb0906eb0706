# Generated from _async/__init__.py by scripts/unasync.py: edit that file, then run the script.
"""The blocking client, split by resource; its blocking twin `_sync/` is generated from it."""

from __future__ import annotations

from watcher_client._sync._client import WatcherClient

__all__ = ["WatcherClient"]
