"""What the console's tests look at, made through the service's real doors: signed
notifications posted to the gateway, a subscribe result reported over /v1, and a message the
outbox lost track of (reserved and begun, then its lease ran out: ``unknown``) and one sent on
its second attempt."""

from __future__ import annotations

from datetime import datetime, timedelta

from storage.models import AttemptOutcome, AttemptResult, SendReservation, TemplateKind
from tests.server.api_client import ADMIN_TOKEN, ONE_TIME, USER, new_key, success_report
from tests.server.conftest import APP_ID, Gateway
from tests.server.notifications import life_account_fields, post, signed, trade_fields
from tests.storage.records import reservation

OTHER_USER = "2088999900000042"


async def follow(gateway: Gateway, user_id: str = USER, app_id: str = APP_ID) -> None:
    """A life-account follow, as Alipay posts it (UTF-8, signed V2)."""
    fields = life_account_fields("follow", user_id, app_id, when=gateway.clock.now, charset="UTF-8")
    status, code, _ = await post(gateway.client, signed(fields, rule="V2"))
    assert (status, code) == (200, "")


async def trade(gateway: Gateway, order: str, app_id: str = APP_ID) -> str:
    """A payment notification; returns its notify id."""
    fields = signed(trade_fields(app_id, when=gateway.clock.now, out_trade_no=order))
    status, code, _ = await post(gateway.client, fields)
    assert (status, code) == (200, "")
    return fields["notify_id"]


async def forged(gateway: Gateway) -> None:
    """A notification whose signature does not match: refused and counted."""
    fields = signed(trade_fields(when=gateway.clock.now))
    fields["total_amount"] = "999.00"
    status, _, _ = await post(gateway.client, fields)
    assert status == 403


async def accepted(gateway: Gateway, user_id: str = USER, template: str = ONE_TIME) -> None:
    """The user accepted a one-time template in the mini-program (one credit)."""
    response = await gateway.client.post(
        f"/v1/apps/{APP_ID}/users/{user_id}/subscribe-results",
        json=success_report(template),
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Idempotency-Key": new_key()},
    )
    assert response.status == 200, await response.text()


def one_time_send(user_id: str, now: datetime) -> SendReservation:
    """A one-time send of APP_ID to ``user_id``, reserved at ``now`` under a 30 s lease."""
    return reservation(
        new_key(),
        user_id=user_id,
        template_id=ONE_TIME,
        kind=TemplateKind.ONE_TIME,
        created_at=now,
        lease_until=now + timedelta(seconds=30),
        app_id=APP_ID,
    )


async def unknown_message(gateway: Gateway, user_id: str = USER) -> str:
    """A message whose attempt began and whose worker vanished: its outcome is ``unknown``
    and its credit spent. Returns its id."""
    store, now = gateway.store, gateway.clock.now
    send = one_time_send(user_id, now)
    outcome = await store.reserve_send(send, begin=True)
    assert outcome.begun
    assert outcome.message.id in await store.abandon_in_flight(now + timedelta(minutes=1))
    return outcome.message.id


async def retried_message(gateway: Gateway, user_id: str = USER) -> str:
    """A message whose first attempt the platform answered busy (queued) and whose second it
    sent, finished through the outbox's own store operations. Returns its id."""
    store, now = gateway.store, gateway.clock.now
    send = one_time_send(user_id, now)
    message = (await store.reserve_send(send, begin=True)).message
    busy = AttemptResult(
        outcome=AttemptOutcome.RETRY,
        sub_code="isp.unknow-error",
        sub_msg="系统繁忙",
        error="the platform was busy",
        next_attempt_at=now + timedelta(seconds=1),
    )
    await store.finish_attempt(message.id, busy, now)
    later = now + timedelta(seconds=2)
    await store.claim_due_messages("console-test", later, later + timedelta(seconds=30), 10)
    await store.begin_attempt(message.id, "console-test", later, later + timedelta(seconds=30))
    sent = AttemptResult(outcome=AttemptOutcome.SENT, platform_code="10000", platform_msg="Success")
    await store.finish_attempt(message.id, sent, later)
    return message.id
