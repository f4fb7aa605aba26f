from __future__ import annotations

from tests.server.conftest import APP_ID, Gateway
from tests.server.notifications import post, signed, trade_fields


async def test_a_signed_trade_notification_is_stored_and_acknowledged(gateway: Gateway) -> None:
    fields = signed(trade_fields())

    status, code, body = await post(gateway.client, fields)

    assert (status, code, body) == (200, "", b"success")
    stored = await gateway.store.get_notification(APP_ID, fields["notify_id"])
    assert stored is not None and stored.fields == fields and stored.rule == "V1"
