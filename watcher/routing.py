"""Declaring HTTP operations once: path, method, scope, body/query/response models, status.

Every route goes through `Operation.endpoint`, which in order:
1. records the route template (for logs and metrics),
2. asks the services' authorizer whether the caller may use this scope (auth is one hook),
3. parses the query string and the JSON body into their pydantic models (422 on failure),
4. calls the handler and renders what it returns as JSON (None → 204).
The same declarations produce the OpenAPI document. The `response` type only documents the
success body: handlers return dicts and are not validated against it on the hot path (a
schemathesis test checks that they conform).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from watcher.errors import ErrorItem, InvalidInput, PayloadTooLarge

Scope = Literal["public", "read", "ingest", "admin"]
Handler = Callable[..., Awaitable[Any]]
ROUTE_KEY = "watcher.route"
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Reply:
    """A handler result with a status other than the operation's default."""

    content: Any
    status_code: int


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"cannot serialise {type(value).__name__}")


def dumps(content: Any) -> bytes:
    return orjson.dumps(content, default=_default, option=orjson.OPT_NON_STR_KEYS)


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)


def validation_errors(error: ValidationError, prefix: str) -> InvalidInput:
    items: list[ErrorItem] = [
        {"loc": [prefix, *e["loc"]], "msg": e["msg"]} for e in error.errors(include_url=False)
    ]
    detail = "; ".join(f"{'.'.join(map(str, i['loc']))}: {i['msg']}" for i in items)
    return InvalidInput(f"invalid request: {detail}", items)


async def read_body(request: Request, limit: int) -> bytes:
    """The raw request body, refusing bodies over `limit` bytes (before reading, when declared)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, limit: int) -> Any:
    """The request body as JSON (an empty body is `{}`), at most `limit` bytes."""
    raw = await read_body(request, limit)
    if not raw.strip():
        return {}
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise InvalidInput.field(["body"], f"invalid JSON: {error}") from None


def parse_model(model: type[M], data: Any, prefix: str) -> M:
    if prefix == "body" and not isinstance(data, dict):
        raise InvalidInput.field(["body"], "expected a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise validation_errors(error, prefix) from None


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    handler: Handler
    scope: Scope
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    # A model, or any type pydantic's TypeAdapter takes (`list[Model]`, `A | B`).
    response: Any = None
    status_code: int = 200
    summary: str = ""
    tags: tuple[str, ...] = ()
    # Extra statuses: a description (the error envelope), or (description, body type) for a
    # status whose body is that type or the envelope.
    responses: dict[int, str | tuple[str, Any]] = field(default_factory=dict)

    async def endpoint(self, request: Request) -> Response:
        request.scope[ROUTE_KEY] = self.path
        services = request.app.state.services
        await services.authorize(request, self.scope)
        kwargs: dict[str, Any] = {}
        if self.query is not None:
            kwargs["query"] = parse_model(self.query, dict(request.query_params), "query")
        if self.body is not None:
            data = await read_json(request, services.settings.max_body_bytes)
            kwargs["body"] = parse_model(self.body, data, "body")
        result = await self.handler(request, **kwargs)
        if isinstance(result, Response):
            return result
        if isinstance(result, Reply):
            return JSONResponse(result.content, status_code=result.status_code)
        if result is None:
            return Response(status_code=204)
        return JSONResponse(result, status_code=self.status_code)

    def route(self) -> Route:
        return Route(self.path, self.endpoint, methods=[self.method], name=self.handler.__name__)


class Router:
    """Collects a feature module's operations."""

    def __init__(self, tag: str = "") -> None:
        self.tag = tag
        self.operations: list[Operation] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        scope: Scope,
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        response: Any = None,
        status_code: int = 200,
        summary: str = "",
        responses: dict[int, str | tuple[str, Any]] | None = None,
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.operations.append(
                Operation(
                    method=method,
                    path=path,
                    handler=handler,
                    scope=scope,
                    body=body,
                    query=query,
                    response=response,
                    status_code=status_code,
                    summary=summary or (handler.__doc__ or "").strip().split("\n")[0],
                    tags=(self.tag,) if self.tag else (),
                    responses=responses or {},
                )
            )
            return handler

        return register

    def get(self, path: str, *, scope: Scope = "read", **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("GET", path, scope=scope, **kw)

    def post(self, path: str, *, scope: Scope, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("POST", path, scope=scope, **kw)

    def patch(
        self, path: str, *, scope: Scope = "admin", **kw: Any
    ) -> Callable[[Handler], Handler]:
        return self.route("PATCH", path, scope=scope, **kw)

    def delete(
        self, path: str, *, scope: Scope = "admin", **kw: Any
    ) -> Callable[[Handler], Handler]:
        return self.route("DELETE", path, scope=scope, **kw)


def path_id(request: Request, name: str = "id") -> int:
    """An integer path parameter; `{id:int}` routes guarantee digits, this bounds the size."""
    value = int(request.path_params[name])
    if value > 2**63 - 1:
        raise InvalidInput.field(["path", name], "must be a 64-bit integer")
    return value
