"""The command line: `watcher serve`, `migrate`, `tokens` and the remote API commands."""

from watcher.cli.local import main

__all__ = ["main"]
