"""Field types shared by request bodies: names, dateparts, counts, timestamps, metadata.
Also the bases of the response models (`Row`, `RuleColumns`), which only document bodies.

Bounds here match the schema, so nothing reaches PostgreSQL that it would refuse.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Annotated, Any, ClassVar

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from watcher.db.schema import ANOMALY_METRICS, DATEPARTS

MAX_BIGINT = 2**63 - 1
MAX_INT = 2**31 - 1
MAX_METADATA_BYTES = 65_536
MAX_METADATA_DEPTH = 16
# Any request body: generous for every real field (lineage specs with metadata reach ~20), and
# far below orjson's 255-level dumps and 1024-level loads limits and Python's recursion limit.
MAX_BODY_DEPTH = 64
# Timestamps stay far inside Python's datetime range (years 1 to 9999): date arithmetic on
# them (deadlines, anomaly lookbacks) cannot overflow, and neither edge reaches PostgreSQL,
# where asyncpg would store datetime.min/max as -infinity/infinity.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
NOT_NULL_FLAGS = frozenset(
    {"active", "load_lineage", "mute_freshness_check", "mute_timeliness_check"}
)


def _normalise_name(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _normalise_lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _assume_utc(value: datetime) -> datetime:
    """Timestamps without a zone are taken as UTC (documented), and must fall in
    [EARLIEST, LATEST). An offset that moves the moment past year 1 or year 9999
    (0001-01-01T00:00:00+01:00) has no UTC datetime at all: refused too, not an OverflowError."""
    if value.tzinfo is None:
        moment = value.replace(tzinfo=UTC)
    else:
        try:
            moment = value.astimezone(UTC)
        except OverflowError:
            raise ValueError("is outside the range of UTC timestamps (years 1 to 9999)") from None
    if not EARLIEST <= moment < LATEST:
        raise ValueError(f"must be from {EARLIEST:%Y-%m-%d} and before {LATEST:%Y-%m-%d} (UTC)")
    return moment


def _watermark(value: Any) -> Any:
    """Watermarks are stored as text: str, int, float, date or datetime are accepted."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise ValueError("must be a string, number, date or datetime")
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise ValueError("must be a string, number, date or datetime")


def json_depth(value: Any, limit: int) -> int:
    """Levels of nested objects and arrays in `value` (a scalar: 0, `{}`: 1), counted without
    recursion and only up to `limit + 1`: a deeper value is not walked further."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        level += 1
        if level > limit:
            return level
        deepest = max(deepest, level)
        stack.extend((child, level) for child in children)
    return deepest


def _metadata(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    # Depth first: orjson refuses to serialise past 255 levels (TypeError, not a ValueError).
    if json_depth(value, MAX_METADATA_DEPTH) > MAX_METADATA_DEPTH:
        raise ValueError(f"must be nested at most {MAX_METADATA_DEPTH} levels")
    if len(orjson.dumps(value)) > MAX_METADATA_BYTES:
        raise ValueError(f"must be at most {MAX_METADATA_BYTES} bytes of JSON")
    return value


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


Name = Annotated[
    str,
    BeforeValidator(_normalise_name),
    Field(min_length=1, max_length=150),
    AfterValidator(_no_nul),
]
Text = Annotated[str, Field(max_length=1000), AfterValidator(_no_nul)]
Datepart = Annotated[
    str, BeforeValidator(_normalise_lower), Field(json_schema_extra={"enum": list(DATEPARTS)})
]
MetricField = Annotated[
    str, BeforeValidator(_normalise_lower), Field(json_schema_extra={"enum": list(ANOMALY_METRICS)})
]
Count = Annotated[int, Field(ge=0, le=MAX_BIGINT)]
Id = Annotated[int, Field(ge=1, le=MAX_BIGINT)]
RuleNumber = Annotated[int, Field(gt=0, le=MAX_INT)]
Timestamp = Annotated[datetime, AfterValidator(_assume_utc)]
Watermark = Annotated[
    Annotated[str, Field(max_length=1000), AfterValidator(_no_nul)] | None,
    BeforeValidator(_watermark),
]
Metadata = Annotated[dict[str, Any] | None, AfterValidator(_metadata)]


RULE_PAIRS = {
    "freshness": ("freshness_number", "freshness_datepart"),
    "timeliness": ("timeliness_number", "timeliness_datepart"),
}


def check_datepart(value: str | None, loc: str) -> None:
    if value is not None and value not in DATEPARTS:
        raise ValueError(f"{loc} must be one of {', '.join(DATEPARTS)}")


# Where a value sits in a body, as (parent trail, key) links: built only when reported.
_Trail = tuple[Any, str | int] | None


def _dotted(trail: _Trail) -> str:
    keys: list[str] = []
    while trail is not None:
        trail, key = trail
        keys.append(str(key))
    return ".".join(reversed(keys))


def body_problem(data: Any) -> str | None:
    """Why a parsed body is refused before its fields are looked at, or None: nested deeper than
    MAX_BODY_DEPTH (ignored fields included), or a string or key holding a NUL character, which
    PostgreSQL's text and jsonb cannot store. Iterative, so no input exhausts the stack."""
    stack: list[tuple[Any, int, _Trail]] = [(data, 0, None)]
    while stack:
        value, level, trail = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return f"{_dotted(trail)}: must not contain NUL characters"
            continue
        if isinstance(value, dict):
            items: Any = value.items()
        elif isinstance(value, list):
            items = enumerate(value)
        else:
            continue
        if level >= MAX_BODY_DEPTH:
            field = _dotted(trail).split(".", 1)[0] or "body"
            return f"{field}: must be nested at most {MAX_BODY_DEPTH} levels"
        for key, item in items:
            here = (trail, key)
            if isinstance(key, str) and "\x00" in key:
                return f"{_dotted(here)}: must not contain NUL characters"
            stack.append((item, level + 1, here))
    return None


class Body(BaseModel):
    """Request bodies: unknown fields are ignored (the original's examples send some)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)

    @model_validator(mode="before")
    @classmethod
    def _refuse_nul(cls, data: Any) -> Any:
        if (problem := body_problem(data)) is not None:
            raise ValueError(problem)
        if isinstance(data, dict) and any(data.get(k, False) is None for k in NOT_NULL_FLAGS):
            # The columns are NOT NULL: an explicit null flag means "leave it as it is".
            data = {k: v for k, v in data.items() if not (k in NOT_NULL_FLAGS and v is None)}
        return data


class RuleFields(Body):
    """Freshness/timeliness rules, mutes and schedule, shared by pipelines and their types.

    A create must give both halves of a rule pair (number and datepart). A PATCH
    (`merges_pairs`) may give one half: it is merged with the stored other half, as the
    original Watcher does, and refused (422) only when the merged pair is incomplete."""

    merges_pairs: ClassVar[bool] = False

    freshness_number: RuleNumber | None = None
    freshness_datepart: Datepart | None = None
    mute_freshness_check: bool | None = None
    timeliness_number: RuleNumber | None = None
    timeliness_datepart: Datepart | None = None
    mute_timeliness_check: bool | None = None
    schedule: Annotated[str, Field(max_length=200)] | None = None
    schedule_timezone: Annotated[str, Field(max_length=64)] | None = None
    schedule_grace_seconds: Annotated[int, Field(ge=0, le=MAX_INT)] | None = None

    @field_validator("schedule_timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        # Checked on its own too: a PATCH may change the zone of a stored schedule.
        if value is not None and (problem := _zone_problem(value)) is not None:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _pairs(self) -> RuleFields:
        for rule in ("freshness", "timeliness"):
            number = f"{rule}_number"
            datepart = f"{rule}_datepart"
            check_datepart(getattr(self, datepart), datepart)
            given = {number, datepart} & self.model_fields_set
            if len(given) == 1 and self.merges_pairs:
                continue
            if len(given) == 1 or (getattr(self, number) is None) != (
                getattr(self, datepart) is None
            ):
                raise ValueError(f"{number} and {datepart} must be given together")
        if self.schedule is not None:
            _check_schedule(self.schedule, self.schedule_timezone)
        return self


class Row(BaseModel):
    """A response body that is a whole table row: columns added later must not break clients
    or the documented schema, so extra keys are allowed."""

    model_config = ConfigDict(extra="allow")


class RuleColumns(Row):
    """The rule, mute and schedule columns of `pipeline` and `pipeline_type` rows."""

    freshness_number: int | None
    freshness_datepart: str | None
    mute_freshness_check: bool
    timeliness_number: int | None
    timeliness_datepart: str | None
    mute_timeliness_check: bool
    schedule: str | None
    schedule_timezone: str | None
    schedule_grace_seconds: int | None


def _check_schedule(schedule: str, timezone: str | None) -> None:
    problem = _schedule_problem(schedule, timezone or "UTC")
    if problem:
        raise ValueError(f"schedule/schedule_timezone invalid: {problem}")


@lru_cache(maxsize=256)
def _zone_problem(timezone: str) -> str | None:
    """Why `timezone` is not a zone the scheduler can use, or None (resolved as CronTrigger does)."""
    from apscheduler.util import astimezone

    try:
        astimezone(timezone)
    except (ValueError, LookupError):
        return f"unknown time zone {timezone!r} (an IANA name such as 'Europe/Paris')"
    return None


@lru_cache(maxsize=256)
def _schedule_problem(schedule: str, timezone: str) -> str | None:
    """Why a cron schedule cannot be used, or None. Remembered: a schedule that never fires
    (February 30th) takes APScheduler ~0.3 s to rule out, searching up to year 9999."""
    from apscheduler.triggers.cron import CronTrigger

    try:
        trigger = CronTrigger.from_crontab(schedule, timezone=timezone)
    except (ValueError, LookupError) as error:
        return str(error)
    if trigger.get_next_fire_time(None, datetime.now(UTC)) is None:
        return "the schedule never fires"
    return None
