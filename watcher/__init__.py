"""Watcher: metadata and observability for data pipelines."""

from __future__ import annotations

__version__ = "0.1.0"
