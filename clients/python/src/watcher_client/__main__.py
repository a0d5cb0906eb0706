"""`watcher-client` / `python -m watcher_client`: `flush` replays the local spool."""

from __future__ import annotations

import sys

from watcher_client._flush import main

if __name__ == "__main__":
    sys.exit(main())
