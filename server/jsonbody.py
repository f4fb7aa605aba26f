"""Strict JSON request bodies: one media type, no duplicate keys, no NaN, bounded size and depth."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from server.errors import InvalidJson, PayloadTooLarge, UnsupportedMediaType, ValidationFailed

Model = TypeVar("Model", bound=BaseModel)


async def read_model(request: web.Request, model: type[Model]) -> Model:
    return parse_model(model, await read_json(request))


async def read_json(request: web.Request) -> Any:
    if request.content_type != "application/json":
        raise UnsupportedMediaType("expected Content-Type: application/json")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge("body is larger than max_body_bytes") from None
    try:
        return json.loads(
            body.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_constants
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise InvalidJson(f"body is not valid UTF-8 JSON: {_short(error)}") from None


def parse_model(model: type[Model], data: Any) -> Model:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ValidationFailed(describe(error)) from None


def describe(error: ValidationError) -> str:
    """Where and why, never the offending value (it may be personal data)."""
    problems = error.errors(include_input=False, include_url=False)
    parts = [
        f"{'.'.join(str(p) for p in problem['loc']) or 'body'}: {problem['msg']}"
        for problem in problems[:10]
    ]
    return "; ".join(parts)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key[:40]!r}")
        result[key] = value
    return result


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _short(error: Exception) -> str:
    if isinstance(error, RecursionError):
        return "nested too deeply"
    return str(error).split("\n")[0][:120]
