"""HTTP: `POST /api/v1/lineage` (one event) and `POST /api/v1/lineage/batch`, bodies read
with gzip support and bounded size."""

from __future__ import annotations

import zlib
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict
from starlette.requests import Request

from watcher import routing
from watcher.errors import Conflict, ErrorItem, InvalidInput, PayloadTooLarge
from watcher.openlineage.events import MAX_BATCH, MalformedBody
from watcher.openlineage.ingest import ingest
from watcher.routing import Reply, Router
from watcher.services import services_of

router = Router("openlineage")


async def read_body(request: Request, limit: int) -> Any:
    """The JSON body (gzip accepted, as the OpenLineage HTTP transports can send), bounded."""
    raw = await routing.read_body(request, limit)
    if request.headers.get("content-encoding", "").lower() == "gzip":
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            raw = inflater.decompress(raw, limit + 1)
        except zlib.error as error:
            raise MalformedBody(f"body is not valid gzip: {error}") from None
        if len(raw) > limit:
            raise PayloadTooLarge(f"request body larger than {limit} bytes")
    if not raw.strip():
        raise MalformedBody("empty body: expected an OpenLineage event as JSON")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise MalformedBody(f"body is not JSON: {error}") from None


class RunIngested(BaseModel):
    event_type: str
    pipeline_id: int
    execution_id: int
    status: Literal["recorded", "ended", "ignored", "folded"]


class JobIngested(BaseModel):
    event_type: Literal["JOB"]
    pipeline_id: int
    status: Literal["recorded"]


class DatasetIngested(BaseModel):
    event_type: Literal["DATASET"]
    address_id: int
    status: Literal["recorded"]


Ingested = RunIngested | JobIngested | DatasetIngested


class BatchItem(BaseModel):
    """One event's outcome: the ingest result (201), or the error envelope's fields."""

    model_config = ConfigDict(extra="allow")

    index: int
    status_code: int
    detail: str | None = None
    errors: list[dict[str, Any]] | None = None


class BatchIngested(BaseModel):
    accepted: int
    rejected: int
    results: list[BatchItem]


_ANSWERS = {
    400: "body is not JSON (or not valid gzip)",
    409: "the runId already belongs to another job",
}


@router.post(
    "/api/v1/lineage", scope="ingest", response=Ingested, status_code=201, responses=_ANSWERS
)
async def post_lineage(request: Request) -> Reply:
    """Ingest one OpenLineage event (RunEvent, JobEvent or DatasetEvent, spec 2-0-2)."""
    services = services_of(request)
    data = await read_body(request, services.settings.max_body_bytes)
    return Reply(await ingest(services, data), 201)


@router.post(
    "/api/v1/lineage/batch",
    scope="ingest",
    response=BatchIngested,
    responses={
        400: _ANSWERS[400],
        422: (
            "some events were rejected (each listed with its reason), or not a batch",
            BatchIngested,
        ),
    },
)
async def post_lineage_batch(request: Request) -> Reply:
    """Ingest a JSON array of events, each in its own transaction; 422 lists the rejected ones."""
    services = services_of(request)
    data = await read_body(request, services.settings.max_body_bytes)
    if not isinstance(data, list) or not 1 <= len(data) <= MAX_BATCH:
        raise InvalidInput.field(["body"], f"expected a JSON array of 1 to {MAX_BATCH} events")
    results: list[dict[str, Any]] = []
    for index, item in enumerate(data):
        try:
            results.append({"index": index, "status_code": 201, **await ingest(services, item)})
        except (InvalidInput, Conflict) as error:
            errors: list[ErrorItem] = error.errors
            results.append(
                {
                    "index": index,
                    "status_code": error.status_code,
                    "detail": error.detail,
                    "errors": errors,
                }
            )
    rejected = sum(1 for r in results if r["status_code"] != 201)
    body = {"accepted": len(results) - rejected, "rejected": rejected, "results": results}
    return Reply(body, 422 if rejected else 200)
