"""Render every error once: JSON envelope on the API, bare ``fail`` on the notification routes."""

from __future__ import annotations

import json
import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from server.errors import (
    INTERNAL_ERROR,
    STATUS_BY_CODE,
    SUBGATE_ERRORS,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RequestRefused,
    SubgateError,
    error_body,
    error_details,
    error_message,
    retry_after_seconds,
)
from server.ops.client_cutoffs import client_went_away, departed
from server.ops.metrics import METRICS, Metrics

logger = logging.getLogger(__name__)

NOTIFY_PREFIX = "/alipay/notify"
ERROR_HEADER = "X-Subgate-Error"
_HTTP_ERRORS: dict[int, type[RequestRefused]] = {
    404: NotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
}


# What a notification route answers to every refusal: Alipay reads only "success" or not, and the
# code goes in ``ERROR_HEADER`` for the operator.
NOTIFY_REFUSAL = "fail"


def counted_status(metrics: Metrics | None, code: str) -> int:
    """An error answer's status (``STATUS_BY_CODE``), counted in subgate_error_answers_total.
    The lane's notification answers (``server/intake/lane_route.py``) count the same way."""
    if metrics is not None:
        metrics.error_answers.labels(code=code).inc()
    return STATUS_BY_CODE.get(code, 500)


def json_error(code: str, message: str, details: dict[str, str] | None = None) -> bytes:
    """The /v1 error envelope's bytes, as ``web.json_response`` encodes it (the lookup's lane,
    ``server/api/subscription_lane.py``, writes the same)."""
    return json.dumps(error_body(code, message, details)).encode()


def retry_after_header(error: SubgateError) -> tuple[tuple[str, str], ...]:
    """``Retry-After`` for a refusal that names a time; nothing for any other."""
    seconds = retry_after_seconds(error)
    return () if seconds is None else (("Retry-After", str(seconds)),)


def render(
    request: web.Request, code: str, message: str, details: dict[str, str] | None = None
) -> web.Response:
    status = counted_status(request.app.get(METRICS), code)
    if request.path.startswith(NOTIFY_PREFIX):
        return web.Response(text=NOTIFY_REFUSAL, status=status, headers={ERROR_HEADER: code})
    body = json_error(code, message, details)
    return web.Response(body=body, status=status, content_type="application/json", charset="utf-8")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except SUBGATE_ERRORS as error:
        response = render(request, error.code, error_message(error), error_details(error))
        response.headers.extend(retry_after_header(error))
        return response
    except web.HTTPException as error:
        refused = _HTTP_ERRORS.get(error.status)
        if refused is None or error.status < 400:
            raise
        response = render(request, refused.code, error.reason)
        if "Allow" in error.headers:  # a 405 must say which methods the route has (RFC 9110)
            response.headers["Allow"] = error.headers["Allow"]
        return response
    except Exception as error:
        if client_went_away(request, error):  # not ours, and nobody to answer: count, no traceback
            metrics = request.app.get(METRICS)
            return departed(request, None if metrics is None else metrics.clients)
        logger.exception("unexpected error on %s %s", request.method, request.path)
        return render(request, INTERNAL_ERROR, "an unexpected error occurred; it was logged")
