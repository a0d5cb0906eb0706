"""Executions as the API answers them: whole-second durations and the original Watcher's
`child_executions` items (its PipelineExecutionGetOutput), beside Watcher's `children`."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from pydantic import BaseModel


class OriginalChildExecution(BaseModel):
    """An item of `child_executions`: the original Watcher's shape, field for field."""

    id: int
    parent_id: int | None
    pipeline_id: int
    start_date: datetime
    end_date: datetime | None
    duration_seconds: int | None
    completed_successfully: bool | None
    inserts: int | None
    updates: int | None
    soft_deletes: int | None
    total_rows: int | None
    watermark: str | None
    next_watermark: str | None
    execution_metadata: dict[str, Any] | None
    anomaly_flags: dict[str, Any] | None
    throughput: float | None
    child_executions: list[OriginalChildExecution]


# The original Watcher's item of `child_executions`, in its order (its PipelineExecutionGetOutput
# without date_recorded/hour_recorded); `children` is Watcher's shorter item, kept.
ORIGINAL_ITEM = (
    "id",
    "parent_id",
    "pipeline_id",
    "start_date",
    "end_date",
    "duration_seconds",
    "completed_successfully",
    "inserts",
    "updates",
    "soft_deletes",
    "total_rows",
    "watermark",
    "next_watermark",
    "execution_metadata",
    "anomaly_flags",
    "throughput",
)


def whole_seconds(value: float | None) -> int | None:
    """Durations in responses are whole seconds, as the original Watcher's integer column
    (its end − start cast to integer: rounded half away from zero); stored exact."""
    return None if value is None else math.floor(value + 0.5)


def response_row(row: dict[str, Any]) -> dict[str, Any]:
    """An execution as the API answers it: `duration_seconds` an integer."""
    return row | {"duration_seconds": whole_seconds(row["duration_seconds"])}


def detail(row: dict[str, Any], child_item: tuple[str, ...]) -> dict[str, Any]:
    """An execution with its direct children twice: the original's `child_executions`
    (its item shape, each with an empty `child_executions`) and Watcher's `children`."""
    children = [response_row(c) for c in row.pop("children")]
    return response_row(row) | {
        "children": [{k: c[k] for k in child_item} for c in children],
        "child_executions": [
            {k: c[k] for k in ORIGINAL_ITEM} | {"child_executions": []} for c in children
        ],
    }
