"""One /v1 operation: its route, scope, handler and documented answers, and the request
parsing every operation shares (path identifiers, the channel, Idempotency-Key, numbers in the
query).

The table of operations is the single source of the routes (``server.api.routes``) and of
the OpenAPI document (``server.api.openapi``), so neither can drift from the other.
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from server.api.auth import Grant, Scope
from server.api.keys import LEDGER, TOKENS
from server.appkeys import CREDENTIALS
from server.consent.ledger import ConsentLedger
from server.consent.views import USER_ID_PATTERN
from server.errors import AppNotFound, IdempotencyKeyRequired, InvalidParameter, ValidationFailed
from storage.models import ConsentChannel

Handler = Callable[[web.Request, ConsentLedger, str], Awaitable[BaseModel]]

_IDENTIFIER = re.compile(USER_ID_PATTERN)
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,128}$")
_WHOLE = re.compile(r"[0-9]{1,18}")  # ASCII digits only: int() would take "1_0" and "٣"
_DECIMAL = re.compile(r"[0-9]{1,9}(\.[0-9]{1,9})?")
COMMON_ERRORS = ("unauthorized", "forbidden", "app_not_found", "validation_failed")
BODY_ERRORS = ("invalid_json", "unsupported_media_type", "too_large", "request_timeout")
# The caller's grant: what operations of no app decide the token may see, and who acts.
GRANT = web.RequestKey("grant", Grant)


@dataclass(frozen=True)
class QueryParameter:
    """A query parameter with its own schema (a bare name in ``Operation.query`` is a string)."""

    name: str
    schema: Mapping[str, Any]
    description: str = ""


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    summary: str
    scope: Scope
    handler: Handler
    response: type[BaseModel]
    request: type[BaseModel] | None = None
    query: tuple[str | QueryParameter, ...] = ()
    headers: tuple[str, ...] = ()
    errors: tuple[str, ...] = field(default=())
    accepted: bool = False  # may answer 202 (still being processed) as well as 200
    for_app: bool = True  # False: no {app_id}; the handler reads the token's GRANT instead

    @property
    def common_errors(self) -> tuple[str, ...]:
        """What any operation of its kind may answer, before its own errors."""
        if self.for_app:
            return COMMON_ERRORS
        return tuple(code for code in COMMON_ERRORS if code != "app_not_found")


def path_value(request: web.Request, name: str) -> str:
    return identifier(name, request.match_info[name])


def identifier(name: str, value: str) -> str:
    """A user or template id as the path gave it, once it is one."""
    if not _IDENTIFIER.fullmatch(value):  # not match: "$" also matches before a final "\n"
        raise ValidationFailed(f"{name} must be 1-64 letters, digits, '_' or '-'")
    return value


def channel_of(request: web.Request, default: str = ConsentChannel.MINI_TEMPLATE) -> str:
    return channel_value(
        request.match_info.get("channel") or request.query.get("channel") or default
    )


def channel_value(value: str) -> str:
    """A consent channel's name, once it is one."""
    if value not in ConsentChannel.__members__.values():
        raise ValidationFailed(
            f"channel must be one of {', '.join(c.value for c in ConsentChannel)}"
        )
    return value


def idempotency_key(request: web.Request) -> str:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        raise IdempotencyKeyRequired("send an Idempotency-Key header so a retry is applied once")
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        raise ValidationFailed("Idempotency-Key must be 1-128 printable ASCII characters")
    return key


def query_number(
    request: web.Request, name: str, default: float, low: float, high: float, *, whole: bool = True
) -> float:
    """A number of the query within [low, high] (a whole one unless ``whole`` is False), or
    ``default`` when absent; anything else is ``invalid_parameter``."""
    text = request.query.get(name)
    if text is None:
        return default
    kind = "an integer" if whole else "a number"
    value: float = math.nan
    if (_WHOLE if whole else _DECIMAL).fullmatch(text):
        value = int(text) if whole else float(text)
    if not low <= value <= high:  # NaN is in no range
        raise InvalidParameter(f"{name} must be {kind} from {low:g} to {high:g}")
    return value


def guarded(operation: Operation) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Authenticate, authorise for the app (or, for an operation of no app, only the scope)
    and scope, then run the operation."""

    async def handle(request: web.Request) -> web.Response:
        grant = request.app[TOKENS].authenticate(request.headers.get("Authorization"))
        app_id = _authorised_app(request, grant, operation)
        answer = await operation.handler(request, request.app[LEDGER], app_id)
        status = getattr(answer, "http_status", 200)
        return json_answer(answer, status)

    return handle


def _authorised_app(request: web.Request, grant: Grant, operation: Operation) -> str:
    """The app in the path, once the grant covers it; "" for an operation of no app (its
    handler checks what the grant covers, with ``request[GRANT]``)."""
    request[GRANT] = grant
    if not operation.for_app:
        grant.require_scope(operation.scope)
        return ""
    app_id = request.match_info["app_id"]
    authorise_app(request.app, grant, app_id, operation.scope)
    return app_id


def authorise_app(app: web.Application, grant: Grant, app_id: str, scope: Scope) -> None:
    """The grant covers the app and the scope, and the app is configured."""
    grant.require(app_id, scope)
    if app_id not in app[CREDENTIALS]:
        raise AppNotFound("no such app is configured")


def json_answer(answer: BaseModel, status: int = 200) -> web.Response:
    """The model as JSON bytes, serialized once (``model_dump_json`` gives a str that
    ``web.json_response`` encodes again: measurable on the single lookup, bench/README.md)."""
    return web.Response(
        body=json_bytes(answer), status=status, content_type="application/json", charset="utf-8"
    )


def json_bytes(answer: BaseModel) -> bytes:
    return type(answer).__pydantic_serializer__.to_json(answer)
