"""POST /alipay/notify[/{app_id}] on the lane (``server/web/lane.py``): the same gateway, the same
answers as ``server/intake/routes.py`` gives through aiohttp.

Alipay's notifications are the one request Subgate takes thousands of times a second, so they are
what the lane serves. Each is answered by ``NotificationGateway`` exactly as the aiohttp route
answers it: the Content-Type's charset (``form_charset``), the reply the handler chose, and every
refusal as ``fail`` with its code in ``X-Subgate-Error``, counted where the aiohttp route counts
it (refusals by app and code, error answers by code). A request whose app id in the path is not
plain letters and digits goes to the aiohttp route, which decodes it.
"""

from __future__ import annotations

import logging

from aiohttp import web

from server.errors import INTERNAL_ERROR, SUBGATE_ERRORS, RequestRefused
from server.intake.handlers import Reply
from server.intake.keys import GATEWAY
from server.intake.routes import form_charset, setup_notify_routes
from server.ops.metrics import METRICS
from server.web.error_middleware import ERROR_HEADER, NOTIFY_REFUSAL, counted_status
from server.web.lane import LaneAnswer, LaneRequest, LaneTarget, add_lane_route

logger = logging.getLogger(__name__)

PATH = b"/alipay/notify"
ROOT_TARGET = LaneTarget("/alipay/notify")
APP_ROUTE = "/alipay/notify/{app_id}"
REFUSAL_TYPE = "text/plain; charset=utf-8"


class NotifyLane:
    """The notification routes as a ``LaneRoute``; the gateway is the app's (set at start-up)."""

    request_line_prefixes = (b"POST " + PATH,)

    def __init__(self, app: web.Application) -> None:
        self._app = app

    def target(self, method: bytes, url: bytes) -> LaneTarget | None:
        if method != b"POST":
            return None
        path = url.partition(b"?")[0]
        if path == PATH:
            return ROOT_TARGET
        app_id = path.removeprefix(PATH + b"/")
        if app_id is path or not app_id.isalnum():
            return None
        return LaneTarget(APP_ROUTE, (app_id.decode("ascii"),))

    async def answer(self, request: LaneRequest) -> LaneAnswer:
        gateway = self._app[GATEWAY]
        app_id = request.target.parameter
        try:
            charset = form_charset(request.header(b"content-type"))
        except RequestRefused as error:
            gateway.count_refusal(app_id, error)
            return self._refusal(error.code)
        try:
            reply = await gateway.receive(request.body, charset, app_id)
        except SUBGATE_ERRORS as error:  # counted by the gateway
            return self._refusal(error.code)
        except Exception:
            logger.exception("unexpected error on POST %s", request.target.route)
            return self._refusal(INTERNAL_ERROR)
        return LaneAnswer(200, content_type(reply), reply.body)

    def refused(self, request: LaneRequest | None, error: RequestRefused) -> LaneAnswer:
        app_id = None if request is None else request.target.parameter
        self._app[GATEWAY].count_refusal(app_id, error)
        return self._refusal(error.code)

    def _refusal(self, code: str) -> LaneAnswer:
        status = counted_status(self._app.get(METRICS), code)
        return LaneAnswer(status, REFUSAL_TYPE, NOTIFY_REFUSAL.encode(), ((ERROR_HEADER, code),))


def content_type(reply: Reply) -> str:
    """The Content-Type aiohttp writes for ``web.Response(content_type=..., charset=...)``."""
    return (
        reply.content_type
        if reply.charset is None
        else (f"{reply.content_type}; charset={reply.charset}")
    )


def setup_notifications(app: web.Application) -> None:
    """The notification routes, for aiohttp and for the lane."""
    setup_notify_routes(app)
    add_lane_route(app, NotifyLane(app))
