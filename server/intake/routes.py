"""POST /alipay/notify and /alipay/notify/{app_id}: the aiohttp shell around the gateway.

Alipay's Content-Type may be the non-standard ``application/x-www-form-urlencoded;
text/html; charset=UTF-8``, or carry no charset while the body is GBK, so the header is
parsed here by hand and the body is read raw (never ``request.post()``).
"""

from __future__ import annotations

import functools

from aiohttp import web

from server.appkeys import SETTINGS
from server.errors import PayloadTooLarge, RequestRefused, UnsupportedMediaType
from server.intake.keys import GATEWAY

FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"


@functools.lru_cache(maxsize=64)  # a gateway sees a handful of distinct values
def form_charset(content_type: str | None) -> str | None:
    """The charset a form Content-Type names, tolerating extra tokens; 415 for anything else."""
    if not content_type:
        raise UnsupportedMediaType("Content-Type is missing; expected a form")
    tokens = [token.strip() for token in content_type.split(";")]
    if tokens[0].lower() != FORM_MEDIA_TYPE:
        raise UnsupportedMediaType("expected application/x-www-form-urlencoded")
    for token in tokens[1:]:
        name, _, value = token.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            return value.strip().strip('"')
    return None


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, refusing before reading when Content-Length is over the limit.

    aiohttp's own ``read`` stops at ``client_max_size`` (set to the same limit by ``build_app``)
    for chunked bodies that declare no length.
    """
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"body is larger than {limit} bytes")
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"body is larger than {limit} bytes") from None


async def receive_notification(request: web.Request) -> web.Response:
    """Refusals propagate to ``server.web.error_middleware``: ``fail``, the code in a header."""
    gateway = request.app[GATEWAY]
    url_app_id = request.match_info.get("app_id")
    try:
        charset = form_charset(request.headers.get("Content-Type"))
        body = await read_body(request, request.app[SETTINGS].server.max_body_bytes)
    except RequestRefused as error:
        gateway.count_refusal(url_app_id, error)
        raise
    reply = await gateway.receive(body, charset, url_app_id)
    return web.Response(body=reply.body, content_type=reply.content_type, charset=reply.charset)


def setup_notify_routes(app: web.Application) -> None:
    app.router.add_post("/alipay/notify", receive_notification)
    app.router.add_post("/alipay/notify/{app_id}", receive_notification)
