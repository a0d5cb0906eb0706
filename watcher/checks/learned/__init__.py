"""Learned expectations at the edges: the learn job and its table (`store`), the learned check
(`judge` pure, `check` I/O), the API (`routes`, `view`). The statistics are in
watcher/expectations (pure)."""
