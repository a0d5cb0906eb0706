"""Rule resolution shared by the checks: which rule applies, is it muted, when is the deadline.

Pure functions of row values and an explicit `now`; no I/O.

Selection (DESIGN §5):
1. a mute on the pipeline or on its type skips the check;
2. the pipeline's own ("child") number + datepart, if both are set;
3. else its type's ("parent") number + datepart;
4. else there is no rule and the check skips the pipeline.

Schedules (missed runs) resolve the same way: the pipeline's `schedule` (with its own
`schedule_timezone`) if set, else the type's. The grace comes from the pipeline if set, else
from the type, else 0 — so a type can carry the cron and a pipeline only a longer grace.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import MAXYEAR, UTC, datetime, timedelta
from typing import Any

FIXED_SECONDS = {"minute": 60, "hour": 3_600, "day": 86_400, "week": 604_800}
# The deadline of a rule that ends beyond datetime's range: it never passes.
NEVER = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Rule:
    """`number` `datepart`s; `used_child_config` tells whether the pipeline's own rule applied."""

    number: int
    datepart: str
    used_child_config: bool

    def deadline(self, start: datetime) -> datetime:
        """`start` + the rule; NEVER when that is past year 9999 (rule numbers go up to
        2³¹−1, so "2147483647 days" is a valid rule — one no execution can break)."""
        try:
            return add_datepart(start, self.number, self.datepart)
        except OverflowError:
            return NEVER

    def seconds_from(self, start: datetime) -> float:
        """The rule's length starting at `start` (a month from Jan 31 is not one from Feb 1)."""
        return (self.deadline(start) - start).total_seconds()


@dataclass(frozen=True, slots=True)
class Schedule:
    cron: str
    timezone: str
    grace_seconds: int
    used_child_config: bool


def add_datepart(moment: datetime, number: int, datepart: str) -> datetime:
    """`moment` + `number` `datepart`s on the calendar, in `moment`'s zone (UTC for rows).

    Months and years keep the day of month, clamped to the month's length: Jan 31 + 1 month
    is Feb 28 (or 29), Feb 29 + 1 year is Feb 28. Past year 9999: OverflowError, as for
    the fixed dateparts.
    """
    if datepart in FIXED_SECONDS:
        return moment + timedelta(seconds=FIXED_SECONDS[datepart] * number)
    if datepart not in ("month", "year"):
        raise ValueError(f"unknown datepart {datepart!r}")
    months = number * 12 if datepart == "year" else number
    year, month0 = divmod(moment.month - 1 + months, 12)
    year += moment.year
    if year > MAXYEAR:
        raise OverflowError("date value out of range")
    day = min(moment.day, calendar.monthrange(year, month0 + 1)[1])
    return moment.replace(year=year, month=month0 + 1, day=day)


def resolve(check: str, child: Mapping[str, Any], parent: Mapping[str, Any]) -> Rule | None:
    """The rule for `check` ("freshness" or "timeliness") given pipeline and type columns."""
    if child.get(f"mute_{check}_check") or parent.get(f"mute_{check}_check"):
        return None
    for row, is_child in ((child, True), (parent, False)):
        number, datepart = row.get(f"{check}_number"), row.get(f"{check}_datepart")
        if number is not None and datepart is not None:
            return Rule(int(number), str(datepart), is_child)
    return None


def resolve_schedule(child: Mapping[str, Any], parent: Mapping[str, Any]) -> Schedule | None:
    """The cron schedule of a pipeline, or None. Muted timeliness mutes missed runs too."""
    if child.get("mute_timeliness_check") or parent.get("mute_timeliness_check"):
        return None
    for row, is_child in ((child, True), (parent, False)):
        if row.get("schedule"):
            grace = child.get("schedule_grace_seconds")
            if grace is None:
                grace = parent.get("schedule_grace_seconds")
            return Schedule(
                cron=str(row["schedule"]),
                timezone=str(row.get("schedule_timezone") or "UTC"),
                grace_seconds=int(grace or 0),
                used_child_config=is_child,
            )
    return None


def split_row(
    row: Mapping[str, Any], parent_prefix: str = "type_"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A joined pipeline+type row → (child columns, parent columns); type columns are prefixed."""
    child: dict[str, Any] = {}
    parent: dict[str, Any] = {}
    cut = len(parent_prefix)
    for key, value in row.items():  # one pass: the checks split every pipeline's row
        if key.startswith(parent_prefix):
            parent[key[cut:]] = value
        else:
            child[key] = value
    return child, parent


RULE_COLUMNS = (
    "freshness_number",
    "freshness_datepart",
    "mute_freshness_check",
    "timeliness_number",
    "timeliness_datepart",
    "mute_timeliness_check",
    "schedule",
    "schedule_timezone",
    "schedule_grace_seconds",
)


def rule_columns_sql(pipeline_alias: str = "p", type_alias: str = "t") -> str:
    """SELECT list of the rule columns of a pipeline and (prefixed `type_`) of its type."""
    child = [f"{pipeline_alias}.{c}" for c in RULE_COLUMNS]
    parent = [f"{type_alias}.{c} AS type_{c}" for c in RULE_COLUMNS]
    return ", ".join(child + parent)
