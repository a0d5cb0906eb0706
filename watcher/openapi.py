"""The OpenAPI 3.1 document, built from the declared operations, and the /docs page.

The Swagger UI 5 assets come from the `swagger-ui-bundle-v2` package (module `swagger_ui_bundle`;
Swagger UI 4 cannot render OpenAPI 3.1) and are served by Watcher itself, so /docs works offline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, get_origin

from pydantic import BaseModel, TypeAdapter
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from watcher import __version__
from watcher.routing import JSONResponse, Operation

_ERROR = {
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                    "msg": {"type": "string"},
                },
            },
        },
    },
}
_STANDARD_ERRORS = {
    "401": "missing or invalid token",
    "403": "token lacks the scope",
    "413": "request body too large",
    "503": "database unavailable or busy (Retry-After)",
}


# Success bodies that are not JSON.
_MEDIA_TYPES = {"/metrics": "text/plain"}


_REF = "#/components/schemas/{model}"


def _schema(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template=_REF, mode="validation")
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


_ERROR_REF = "#/components/schemas/Error"


def _response_schema(response: Any, components: dict[str, Any]) -> dict[str, Any]:
    """The success body's schema: a model by reference, `list[Model]` or a union inline."""
    if response is None:
        return {}
    if get_origin(response) is None and isinstance(response, type):
        if issubclass(response, BaseModel):
            schema = response.model_json_schema(ref_template=_REF, mode="serialization")
            components.update(schema.pop("$defs", {}))
            components[response.__name__] = schema
            return {"$ref": f"#/components/schemas/{response.__name__}"}
    schema = TypeAdapter(response).json_schema(ref_template=_REF, mode="serialization")
    components.update(schema.pop("$defs", {}))
    return schema


def _parameters(op: Operation, components: dict[str, Any]) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    for segment in op.path.split("/"):
        if segment.startswith("{"):
            name = segment.strip("{}").split(":")[0]
            params.append(
                {
                    "name": name,
                    "in": "path",
                    "required": True,
                    "schema": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
                }
            )
    if op.query is not None:
        schema = op.query.model_json_schema(mode="validation")
        for name, prop in schema.get("properties", {}).items():
            params.append(
                {
                    "name": name,
                    "in": "query",
                    "required": name in schema.get("required", []),
                    "schema": prop,
                }
            )
    return params


def _responses(op: Operation, components: dict[str, Any]) -> dict[str, Any]:
    error = {"content": {"application/json": {"schema": {"$ref": _ERROR_REF}}}}
    responses: dict[str, Any] = {}
    success = _response_schema(op.response, components)
    if op.status_code == 204:
        responses["204"] = {"description": "done"}
    else:
        media = _MEDIA_TYPES.get(op.path, "application/json")
        responses[str(op.status_code)] = {
            "description": "ok",
            "content": {media: {"schema": success}},
        }
    if op.status_code == 201:
        responses["200"] = {
            "description": "already existed",
            "content": {"application/json": {"schema": success}},
        }
    if op.status_code == 204:
        responses["204"] = {"description": "done (also for an identical retry)"}
    for code, text in {
        "422": "invalid input",
        "404": "not found",
        "409": "conflict",
        **_STANDARD_ERRORS,
    }.items():
        responses[code] = {"description": text, **error}
    for status, answer in op.responses.items():
        if isinstance(answer, tuple):  # (description, body type): that body or the envelope
            text, body = answer
            schema = {"oneOf": [_response_schema(body, components), {"$ref": _ERROR_REF}]}
            responses[str(status)] = {
                "description": text,
                "content": {"application/json": {"schema": schema}},
            }
        else:
            responses[str(status)] = {"description": answer, **error}
    return responses


def document(operations: list[Operation]) -> dict[str, Any]:
    components: dict[str, Any] = {"Error": _ERROR}
    paths: dict[str, Any] = {}
    for op in operations:
        path = "/".join(
            s.split(":")[0] + "}" if s.startswith("{") else s for s in op.path.split("/")
        )
        entry: dict[str, Any] = {
            "operationId": op.handler.__name__,
            "summary": op.summary,
            "tags": list(op.tags),
            "parameters": _parameters(op, components),
            "responses": _responses(op, components),
        }
        if op.scope != "public":
            entry["security"] = [{"bearer": [op.scope]}]
        if op.body is not None:
            entry["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": _schema(op.body, components)}},
            }
        paths.setdefault(path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Watcher",
            "version": __version__,
            "description": "Metadata and observability for data pipelines.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


_DOCS = """<!doctype html><html><head><meta charset="utf-8"><title>Watcher API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css"></head><body><div id="ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui"});</script></body></html>"""


def routes(operations: Callable[[], list[Operation]]) -> list[BaseRoute]:
    cached: dict[str, Any] = {}

    async def openapi_json(request: Request) -> Response:
        if "doc" not in cached:
            cached["doc"] = document(operations())
        return JSONResponse(cached["doc"])

    async def docs(request: Request) -> Response:
        return HTMLResponse(_DOCS)

    result: list[BaseRoute] = [
        Route("/openapi.json", openapi_json, methods=["GET"], include_in_schema=False),
        Route("/docs", docs, methods=["GET"], include_in_schema=False),
    ]
    try:
        import swagger_ui_bundle

        result.append(
            Mount("/docs/assets", app=StaticFiles(directory=swagger_ui_bundle.swagger_ui_path))
        )
    except ImportError:  # the page then says so in the browser; the JSON still works
        pass
    return result
