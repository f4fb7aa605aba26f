"""GET /v1/apps/{app_id}/users/{user_id}/subscriptions/{template_id} on the lane
(``server/web/lane.py``): the same checks and the same answer as the aiohttp route.

The single-key lookup is what a merchant's services ask before each message, and about a third
of its CPU was aiohttp's request machinery around a small read (bench/README.md, "Lookups").
The lane takes only the plain form of the route: identifiers that need no decoding and at most
a ``channel=`` query of plain letters; anything else (escapes, other parameters, a trailing
slash) is aiohttp's, which decodes it and answers as before. Authentication, the app's
authorisation, the identifiers' and the channel's rules and the error envelope are the API's own
functions.
"""

from __future__ import annotations

import logging
import re

from aiohttp import web

from server.api.keys import LEDGER, TOKENS
from server.api.operations import authorise_app, channel_value, identifier, json_bytes
from server.errors import (
    INTERNAL_ERROR,
    SUBGATE_ERRORS,
    RequestRefused,
    SubgateError,
    error_details,
    error_message,
)
from server.ops.metrics import METRICS
from server.web.error_middleware import counted_status, json_error, retry_after_header
from server.web.lane import LaneAnswer, LaneRequest, LaneTarget
from storage.models import ConsentChannel

logger = logging.getLogger(__name__)

ROUTE = "/v1/apps/{app_id}/users/{user_id}/subscriptions/{template_id}"
JSON = "application/json; charset=utf-8"
# app, user, template: plain segments only (the identifiers' own rules are checked in answer).
_PLAIN_PATH = re.compile(
    rb"/v1/apps/([A-Za-z0-9_-]+)/users/([A-Za-z0-9_-]+)/subscriptions/([A-Za-z0-9_-]+)"
)
_PLAIN_QUERY = re.compile(rb"(?:channel=([a-z_]*))?")


class SubscriptionLane:
    """The single-key lookup as a ``LaneRoute``; the ledger and tokens are the app's."""

    request_line_prefixes = (b"GET /v1/apps/",)

    def __init__(self, app: web.Application) -> None:
        self._app = app

    def target(self, method: bytes, url: bytes) -> LaneTarget | None:
        if method != b"GET":
            return None
        path, _, query = url.partition(b"?")
        found, channel = _PLAIN_PATH.fullmatch(path), _PLAIN_QUERY.fullmatch(query)
        if found is None or channel is None:
            return None
        values = (*found.groups(), channel.group(1) or b"")
        return LaneTarget(ROUTE, tuple(value.decode("ascii") for value in values))

    async def answer(self, request: LaneRequest) -> LaneAnswer:
        app_id, user_id, template_id, channel = request.target.parameters
        try:
            grant = self._app[TOKENS].authenticate(_authorization(request))
            authorise_app(self._app, grant, app_id, "read")
            answer = await self._app[LEDGER].subscription(
                app_id,
                identifier("user_id", user_id),
                identifier("template_id", template_id),
                channel_value(channel or ConsentChannel.MINI_TEMPLATE),  # as ``channel_of``
            )
        except SUBGATE_ERRORS as error:
            return self._refusal(error)
        except Exception:
            logger.exception("unexpected error on GET %s", ROUTE)
            return self._error(INTERNAL_ERROR, "an unexpected error occurred; it was logged")
        return LaneAnswer(getattr(answer, "http_status", 200), JSON, json_bytes(answer))

    def refused(self, request: LaneRequest | None, error: RequestRefused) -> LaneAnswer:
        return self._refusal(error)

    def _refusal(self, error: SubgateError) -> LaneAnswer:
        details = error_details(error)
        return self._error(error.code, error_message(error), details, retry_after_header(error))

    def _error(
        self,
        code: str,
        message: str,
        details: dict[str, str] | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> LaneAnswer:
        """As ``server/web/error_middleware.py`` renders it, the status counted by code."""
        status = counted_status(self._app.get(METRICS), code)
        return LaneAnswer(status, JSON, json_error(code, message, details), headers)


def _authorization(request: LaneRequest) -> str | None:
    """The Authorization header decoded as aiohttp decodes it (UTF-8, undecodable bytes kept as
    surrogates), so that a token's digest is the same on either path."""
    raw = request.raw_header(b"authorization")
    return None if raw is None else raw.decode("utf-8", "surrogateescape")
