"""Strict JSON request bodies: one media type, no duplicate keys, no NaN, bounded size and depth.

``json.loads`` accepts three things nothing downstream can hold, so they are refused here as
``invalid_json`` too: an unpaired surrogate escape (``"\\ud800"`` decodes to a string that is not
Unicode and cannot be encoded, hashed or stored), a NUL escape (``"\\u0000"``: PostgreSQL keeps no
NUL in text, so refusing it on every store keeps the answer the same whichever store is
configured) and nesting deeper than ``MAX_DEPTH`` (pydantic refuses to serialise very deep
values; no request body of this API nests beyond a few levels).
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from server.errors import InvalidJson, PayloadTooLarge, UnsupportedMediaType, ValidationFailed

Model = TypeVar("Model", bound=BaseModel)
MAX_DEPTH = 64


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
        data = json.loads(
            body.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_constants
        )
        _check_tree(data)
    except (UnicodeError, ValueError, RecursionError) as error:
        raise InvalidJson(f"body is not valid UTF-8 JSON: {_short(error)}") from None
    return data


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


def _check_tree(data: Any) -> None:
    """Raise ``RecursionError`` beyond ``MAX_DEPTH``, ``UnicodeEncodeError`` on a lone surrogate,
    ``ValueError`` on a NUL character."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            _storable(value)
        elif isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise RecursionError
            if isinstance(value, dict):
                for key in value:
                    _storable(key)
                stack.extend((item, depth + 1) for item in value.values())
            else:
                stack.extend((item, depth + 1) for item in value)


def _storable(text: str) -> None:
    text.encode("utf-8")  # UnicodeEncodeError on a lone surrogate
    if "\x00" in text:
        raise ValueError("a string holds a NUL character (\\u0000)")


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _short(error: Exception) -> str:
    if isinstance(error, RecursionError):
        return "nested too deeply"
    if isinstance(error, UnicodeEncodeError):
        return "a string holds an unpaired surrogate escape"
    return str(error).split("\n")[0][:120]
