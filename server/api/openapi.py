"""GET /openapi.json: an OpenAPI 3.1 document built from the operation table and the models.

Nothing here is written by hand twice: paths, scopes, bodies, answers and error codes all come from
the operation tables (``server.api.routes.all_operations``) and the pydantic models, so the document
cannot drift from the code.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from server.api.models import ErrorAnswer
from server.api.operations import Operation, QueryParameter
from server.api.routes import all_operations
from server.errors import STATUS_BY_CODE

_PATH_PARAMETER = re.compile(r"{(\w+)}")
_REF = "#/components/schemas/{model}"


def openapi_document() -> dict[str, Any]:
    operations = all_operations()
    models = {ErrorAnswer} | {op.response for op in operations}
    models |= {op.request for op in operations if op.request is not None}
    ordered = sorted(models, key=lambda m: m.__name__)
    _, schemas = models_json_schema(
        [(model, "serialization") for model in ordered], ref_template=_REF
    )
    paths: dict[str, dict[str, Any]] = {}
    for operation in operations:
        paths.setdefault(operation.path, {})[operation.method.lower()] = _operation(operation)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Subgate consent API", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


def _operation(operation: Operation) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "operationId": operation.operation_id,
        "summary": operation.summary,
        "description": _who_may(operation),
        "parameters": _parameters(operation),
        "responses": _responses(operation),
    }
    if operation.request is not None:
        spec["requestBody"] = {"required": True, "content": _json(operation.request)}
    return spec


def _who_may(operation: Operation) -> str:
    if operation.for_app:
        return f"Needs a token with the `{operation.scope}` scope for the app."
    return (
        f"Needs a token with the `{operation.scope}` scope; a token for some apps only sees "
        "the destinations that carry none but its apps."
    )


def _parameters(operation: Operation) -> list[dict[str, Any]]:
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PATH_PARAMETER.findall(operation.path)
    ]
    parameters += [_query_parameter(query) for query in operation.query]
    parameters += [
        {"name": name, "in": "header", "required": True, "schema": {"type": "string"}}
        for name in operation.headers
    ]
    return parameters


def _query_parameter(query: str | QueryParameter) -> dict[str, Any]:
    if isinstance(query, str):
        return {"name": query, "in": "query", "required": False, "schema": {"type": "string"}}
    parameter = {"name": query.name, "in": "query", "required": False, "schema": dict(query.schema)}
    return parameter | ({"description": query.description} if query.description else {})


def _responses(operation: Operation) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": {"description": "OK", "content": _json(operation.response)}}
    if operation.accepted:
        responses["202"] = {
            "description": "Accepted: the outbox still owns it (queued, or unknown outcome)",
            "content": _json(operation.response),
        }
    codes = (*operation.common_errors, *operation.errors)
    by_status: dict[int, list[str]] = {}
    for code in (*codes, "storage_unavailable", "internal_error"):
        by_status.setdefault(STATUS_BY_CODE[code], []).append(code)
    for status, status_codes in sorted(by_status.items()):
        responses[str(status)] = {
            "description": "error codes: " + ", ".join(sorted(set(status_codes))),
            "content": _json(ErrorAnswer),
        }
    return responses


def _json(model: type[BaseModel]) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": _REF.format(model=model.__name__)}}}


async def serve_openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())
