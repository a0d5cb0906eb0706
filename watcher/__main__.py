from __future__ import annotations

from watcher.cli.local import main

if __name__ == "__main__":
    raise SystemExit(main())
