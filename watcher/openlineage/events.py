"""OpenLineage events as Watcher reads them (spec 2-0-2): the pydantic models of RunEvent,
JobEvent and DatasetEvent with the facets Watcher uses, and `parse_event`, which picks the
kind and validates it (facets nested too deep are shed first)."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
)

from watcher.errors import InvalidInput, WatcherError
from watcher.fields import MAX_BODY_DEPTH, MAX_METADATA_DEPTH, Count, Timestamp, json_depth
from watcher.routing import validation_errors

# Kept facets sit three levels down in the metadata ({"openlineage": {"facets": {name: …}}}).
FACET_DEPTH = MAX_METADATA_DEPTH - 3
NAME_LIMIT = 150
FACET_BYTES = 8_192
FACETS_BYTES = 32_768
MAX_DATASETS = 1000
MAX_BATCH = 1000
ERROR_MESSAGE_LIMIT = 2000
STACK_TRACE_LIMIT = 8000
TERMINAL = {"COMPLETE", "FAIL", "ABORT"}

# Dataset namespace scheme → address type group (OpenLineage naming conventions).
GROUPS: dict[str, str] = {
    **dict.fromkeys(
        "postgres postgresql mysql mariadb bigquery snowflake redshift trino presto mssql "
        "sqlserver oracle db2 teradata athena hive databricks spanner clickhouse duckdb "
        "sqlite vertica synapse azuresql mongodb cassandra dynamodb".split(),
        "database",
    ),
    **dict.fromkeys(
        "s3 s3a s3n gs gcs file hdfs abfs abfss wasb wasbs dbfs adl ftp sftp".split(), "storage"
    ),
    **dict.fromkeys("kafka kinesis pubsub eventhubs pulsar rabbitmq".split(), "stream"),
    **dict.fromkeys("http https".split(), "api"),
}


class MalformedBody(WatcherError):
    """400: the body is not JSON (or not valid gzip)."""

    status_code = 400


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _none_as_empty(value: Any) -> Any:
    return {} if value is None else value


Str = Annotated[str, Field(min_length=1, max_length=2000), AfterValidator(_no_nul)]
Facets = Annotated[dict[str, Any], BeforeValidator(_none_as_empty)]


class Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Facet(BaseModel):
    """A facet: the fields Watcher reads are typed, everything else is kept as sent."""

    model_config = ConfigDict(extra="allow")


class JobRef(Model):
    namespace: Str
    name: Str


class RunRef(Model):
    runId: UUID


class RootRef(Model):
    run: RunRef
    job: JobRef


class ParentRunFacet(Facet):
    run: RunRef
    job: JobRef
    root: RootRef | None = None


class ErrorMessageFacet(Facet):
    message: Annotated[str, Field(max_length=1_000_000)]
    programmingLanguage: str | None = None
    stackTrace: str | None = None


class RunFacets(Facet):
    parent: ParentRunFacet | None = None
    errorMessage: ErrorMessageFacet | None = None


class OutputStatisticsFacet(Facet):
    rowCount: Count | None = None
    size: Count | None = None


class OutputFacets(Facet):
    outputStatistics: OutputStatisticsFacet | None = None


class Job(JobRef):
    facets: Facets = Field(default_factory=dict)


class Run(RunRef):
    facets: Annotated[RunFacets, BeforeValidator(_none_as_empty)] = Field(default_factory=RunFacets)


class Dataset(JobRef):
    facets: Facets = Field(default_factory=dict)


class InputDataset(Dataset):
    inputFacets: Facets = Field(default_factory=dict)


class OutputDataset(Dataset):
    outputFacets: Annotated[OutputFacets, BeforeValidator(_none_as_empty)] = Field(
        default_factory=OutputFacets
    )


class BaseEvent(Model):
    """What Marquez requires: eventTime and producer (schemaURL is optional there too)."""

    eventTime: Timestamp
    producer: Str
    schemaURL: Str | None = None
    _raw_time: str = PrivateAttr(default="")

    @property
    def raw_time(self) -> str:
        """The eventTime as sent (a naive one reads as UTC in `eventTime`)."""
        return self._raw_time or self.eventTime.isoformat()


def _none_as_list(value: Any) -> Any:
    return [] if value is None else value


class JobEvent(BaseEvent):
    job: Job
    inputs: Annotated[
        list[InputDataset], Field(max_length=MAX_DATASETS), BeforeValidator(_none_as_list)
    ] = Field(default_factory=list)
    outputs: Annotated[
        list[OutputDataset], Field(max_length=MAX_DATASETS), BeforeValidator(_none_as_list)
    ] = Field(default_factory=list)


class RunEvent(JobEvent):
    eventType: Literal["START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"] | None = None
    run: Run


class DatasetEvent(BaseEvent):
    dataset: Dataset


Event = RunEvent | JobEvent | DatasetEvent


# --- HTTP ---------------------------------------------------------------------------------


_FACET_KEYS = ("facets", "inputFacets", "outputFacets")


def shed_deep_facets(data: dict[str, Any]) -> None:
    """Drop, in place, facets nested deeper than FACET_DEPTH (they would not be kept anyway,
    see `bounded`) before validation: a Spark plan can nest hundreds of levels, past what
    the validator and the JSON writer follow, and must not cost the event itself."""
    holders = [data.get(k) for k in ("run", "job", "dataset")]
    for side in ("inputs", "outputs"):
        if isinstance(data.get(side), list):
            holders += data[side]
    for holder in holders:
        if not isinstance(holder, dict):
            continue
        for key in _FACET_KEYS:
            facets = holder.get(key)
            if isinstance(facets, dict):
                for name in [
                    n for n, v in facets.items() if json_depth(v, FACET_DEPTH) > FACET_DEPTH
                ]:
                    del facets[name]


def parse_event(data: Any) -> Event:
    """A RunEvent (has run), DatasetEvent (has dataset) or JobEvent (has job only)."""
    if not isinstance(data, dict):
        raise InvalidInput.field(["body"], "expected an OpenLineage event (a JSON object)")
    shed_deep_facets(data)
    if json_depth(data, MAX_BODY_DEPTH) > MAX_BODY_DEPTH:
        raise InvalidInput.field(["body"], f"nested deeper than {MAX_BODY_DEPTH} levels")
    model: type[Event]
    if "run" in data:
        model = RunEvent
    elif "dataset" in data:
        model = DatasetEvent
    elif "job" in data:
        model = JobEvent
    else:
        raise InvalidInput.field(
            ["body"], "not an OpenLineage event: expected run and job, dataset, or job"
        )
    try:
        event = model.model_validate(data)
    except ValidationError as error:
        raise validation_errors(error, "body") from None
    if isinstance(data.get("eventTime"), str):
        event._raw_time = data["eventTime"]
    return event
