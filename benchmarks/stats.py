"""Small numeric helpers shared by the load generators and the orchestrator."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values (None when empty)."""
    if not sorted_values:
        return None
    rank = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


def latency_summary(seconds: list[float]) -> dict[str, Any]:
    """count, p50/p95/p99/max in milliseconds."""
    values = sorted(seconds)
    summary: dict[str, Any] = {"count": len(values)}
    for name, q in (("p50_ms", 50), ("p95_ms", 95), ("p99_ms", 99), ("max_ms", 100)):
        value = percentile(values, q)
        summary[name] = None if value is None else round(value * 1000, 3)
    return summary


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None
