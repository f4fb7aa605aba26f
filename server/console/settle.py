"""POST /console/apps/{app}/messages/{id}/settle: an operator's verdict on an ``unknown``
message, through the one settle operation the /v1 API uses (``MessageSender.settle``).

``delivered`` keeps the credit spent; ``not delivered`` refunds a one-time credit; the reason
and who settled (the token's identity, never the token) are kept as evidence in the ledger. It
needs the ``write`` scope, as every console action does, and ``send``, as the API's settle does.
"""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from server.api.keys import SENDER
from server.console.guard import app_of, console_page, see_other
from server.console.keys import SESSION
from server.sending.settle import settle_request


@console_page
async def settle(request: web.Request) -> web.StreamResponse:
    app_id = app_of(request, "write")
    grant = request[SESSION].grant
    grant.require_scope("send")
    message_id = request.match_info["message_id"]
    form = await request.post()
    verdict = settle_request(form.get("outcome"), form.get("reason"))
    await request.app[SENDER].settle(app_id, message_id, verdict, settled_by=grant.identity)
    return see_other(f"/console/apps/{quote(app_id)}/messages/{quote(message_id)}?settled=1")
