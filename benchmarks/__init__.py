"""Watcher's reproducible benchmark: `python -m benchmarks.run` (or `make bench`)."""
