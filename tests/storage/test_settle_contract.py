"""Settling a message of unknown outcome, on every Store backend: the status, the settlement kept
on the message, the ledger's operator event (a refund or a confirm), the events written with
them, every refusal, and two settles racing (on PostgreSQL through two pools)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from storage import Store
from storage.errors import MessageNotUnknown
from storage.ledger import fold
from storage.models import (
    AttemptOutcome,
    AttemptResult,
    ConsentAction,
    ConsentEvent,
    ConsentSource,
    ConsentState,
    EventType,
    MessageRecord,
    MessageStatus,
    Settlement,
    SettleOutcome,
    TemplateKind,
)
from tests.storage.conftest import StoreFactory
from tests.storage.event_log import log
from tests.storage.records import APP, NOW, TEMPLATE, USER, accept, reservation

CREATED = NOW + timedelta(hours=1)  # when reservation() creates its messages
SETTLED_AT = CREATED + timedelta(days=1)
WHO = "token:1a2b3c4d"
REASON = "the user confirmed on the phone that nothing arrived"


def verdict(outcome: SettleOutcome, reason: str = REASON, who: str = WHO) -> Settlement:
    return Settlement(outcome=outcome, reason=reason, settled_by=who, settled_at=SETTLED_AT)


async def unknown_message(
    store: Store, key: str = "k-1", template_id: str = TEMPLATE, kind: TemplateKind | None = None
) -> MessageRecord:
    """A message whose one attempt ended unknown, after one acceptance of ``template_id``."""
    await store.append_consent_events([accept(template_id=template_id)], NOW)
    wanted = reservation(key, template_id=template_id, kind=kind or TemplateKind.ONE_TIME)
    message = (await store.reserve_send(wanted, begin=True)).message
    unknown = AttemptResult(outcome=AttemptOutcome.UNKNOWN, error="unsigned answer")
    finished = await store.finish_attempt(message.id, unknown, CREATED)
    assert finished.status is MessageStatus.UNKNOWN
    return finished


async def folded_state(store: Store, template_id: str = TEMPLATE) -> ConsentState:
    """The key's projection, proven equal to the fold of its log."""
    [state] = await store.consent_states(APP, USER, "mini_template", template_id)
    history = await store.consent_history(APP, USER, "mini_template", template_id)
    assert state == fold(APP, USER, "mini_template", template_id, [(e, e.id) for e in history])
    return state


@pytest.mark.parametrize(
    ("outcome", "status", "action", "credits"),
    [
        (
            SettleOutcome.NOT_DELIVERED,
            MessageStatus.SETTLED_NOT_DELIVERED,
            ConsentAction.REFUND,
            1,
        ),
        (SettleOutcome.DELIVERED, MessageStatus.SETTLED_DELIVERED, ConsentAction.CONFIRM, 0),
    ],
)
async def test_a_settle_records_the_verdict_on_the_message_and_in_the_ledger(
    store: Store,
    outcome: SettleOutcome,
    status: MessageStatus,
    action: ConsentAction,
    credits: int,
) -> None:
    message = await unknown_message(store)
    assert (await folded_state(store)).credits == 0

    settled = await store.settle_message(APP, message.id, verdict(outcome))

    assert settled is not None
    assert (settled.status, settled.updated_at, settled.settlement) == (
        status,
        SETTLED_AT,
        verdict(outcome),
    )
    assert settled.last_error == message.last_error == "unsigned answer"  # the unknown's why
    assert await store.get_message(APP, message.id) == settled
    state = await folded_state(store)
    assert (state.credits, state.last_source, state.open_spends) == (
        credits,
        ConsentSource.OPERATOR,
        (),
    )
    history = await store.consent_history(APP, USER, "mini_template", TEMPLATE)
    assert [(e.action, e.source) for e in history] == [
        (ConsentAction.ACCEPT, ConsentSource.CLIENT_REPORT),
        (ConsentAction.SPEND, ConsentSource.SEND),
        (action, ConsentSource.OPERATOR),
    ]
    assert history[-1].evidence == (
        f"message:{message.id} settled {outcome.value} by {WHO}: {REASON}"
    )
    assert history[-1].occurred_at == SETTLED_AT
    assert await store.message_counts() == {("mini_template", status.value): 1}


@pytest.mark.parametrize("outcome", list(SettleOutcome))
async def test_a_settle_writes_its_events_in_the_same_transaction(
    store: Store, outcome: SettleOutcome
) -> None:
    message = await unknown_message(store)
    before = len(await log(store))

    settled = await store.settle_message(APP, message.id, verdict(outcome))

    assert settled is not None
    written = (await log(store))[before:]
    assert [e.type for e in written] == [EventType.MESSAGE_UPDATED, EventType.CONSENT_CHANGED]
    updated, changed = written
    assert updated.data == {
        "message_id": message.id,
        "channel": "mini_template",
        "template_id": TEMPLATE,
        "status": settled.status.value,
        "attempts": 1,
        "platform_code": None,
        "platform_msg": None,
        "sub_code": None,
        "sub_msg": None,
        "settlement": {"reason": REASON, "settled_by": WHO},
    }
    assert (updated.user_id, updated.created_at) == (USER, SETTLED_AT)
    assert changed.data is not None
    expected_action = "refund" if outcome is SettleOutcome.NOT_DELIVERED else "confirm"
    assert (changed.data["action"], changed.data["source"], changed.data["credits"]) == (
        expected_action,
        "operator",
        (await folded_state(store)).credits,
    )


async def test_a_long_term_send_settled_not_delivered_leaves_the_subscription_as_it_was(
    store: Store,
) -> None:
    message = await unknown_message(store, template_id="T-long", kind=TemplateKind.LONG_TERM)
    before = await folded_state(store, "T-long")

    await store.settle_message(APP, message.id, verdict(SettleOutcome.NOT_DELIVERED))

    after = await folded_state(store, "T-long")
    assert after.status is before.status
    assert after.open_spends == ()


async def test_settling_twice_is_refused_and_changes_nothing(store: Store) -> None:
    message = await unknown_message(store)
    first = await store.settle_message(APP, message.id, verdict(SettleOutcome.NOT_DELIVERED))
    written = await log(store)

    for outcome in SettleOutcome:
        with pytest.raises(MessageNotUnknown, match="settled_not_delivered"):
            await store.settle_message(APP, message.id, verdict(outcome, "again", "token:other"))

    assert await store.get_message(APP, message.id) == first
    assert await log(store) == written
    assert (await folded_state(store)).credits == 1


@pytest.mark.parametrize("status", ["sent", "failed", "queued", "sending"])
async def test_only_an_unknown_message_can_be_settled(store: Store, status: str) -> None:
    await store.append_consent_events([accept()], NOW)
    message = (await store.reserve_send(reservation("k-1"), begin=True)).message
    outcomes = {
        "sent": AttemptOutcome.SENT,
        "failed": AttemptOutcome.REJECTED,
        "queued": AttemptOutcome.RETRY,
    }
    if status in outcomes:
        result = AttemptResult(outcome=outcomes[status], next_attempt_at=SETTLED_AT)
        message = await store.finish_attempt(message.id, result, CREATED)
    assert message.status.value == status
    written = await log(store)

    with pytest.raises(MessageNotUnknown, match=status):
        await store.settle_message(APP, message.id, verdict(SettleOutcome.NOT_DELIVERED))

    assert await store.get_message(APP, message.id) == message
    assert await log(store) == written


async def test_a_message_of_no_such_id_or_of_another_app_is_not_found(store: Store) -> None:
    message = await unknown_message(store)

    assert await store.settle_message(APP, "msg_none", verdict(SettleOutcome.DELIVERED)) is None
    other = await store.settle_message(
        "2021000000000002", message.id, verdict(SettleOutcome.DELIVERED)
    )

    assert other is None
    assert (await store.get_message(APP, message.id)) == message


async def test_concurrent_settles_of_one_message_refund_at_most_once(
    backend: str, store: Store, store_factory: StoreFactory
) -> None:
    message = await unknown_message(store)
    # PostgreSQL: replicas, each with its own pool; SQLite: one process's single writer.
    stores = [store, await store_factory()] if backend == "postgres" else [store]
    outcomes = [SettleOutcome.NOT_DELIVERED, SettleOutcome.DELIVERED] * 4

    results = await asyncio.gather(
        *(
            stores[i % len(stores)].settle_message(APP, message.id, verdict(o, f"try {i}"))
            for i, o in enumerate(outcomes)
        ),
        return_exceptions=True,
    )

    won = [r for r in results if isinstance(r, MessageRecord)]
    assert len(won) == 1
    assert all(isinstance(r, MessageNotUnknown) for r in results if r is not won[0])
    settlement = won[0].settlement
    assert settlement is not None
    expected_credits = 1 if settlement.outcome is SettleOutcome.NOT_DELIVERED else 0
    assert (await folded_state(store)).credits == expected_credits
    history = await store.consent_history(APP, USER, "mini_template", TEMPLATE)
    assert [e.source for e in history].count(ConsentSource.OPERATOR) == 1
    updates = [e for e in await log(store) if e.type is EventType.MESSAGE_UPDATED]
    assert [(e.data or {})["status"] for e in updates] == ["unknown", won[0].status.value]


def test_a_confirmed_spend_can_never_be_refunded_and_a_refund_closes_it_once() -> None:
    base = accept()
    spend = base.model_copy(
        update={
            "action": ConsentAction.SPEND,
            "source": ConsentSource.SEND,
            "evidence": "message:msg_1",
            "occurred_at": NOW + timedelta(minutes=1),
        }
    )

    def closing(action: ConsentAction, minute: int, evidence: str) -> ConsentEvent:
        return spend.model_copy(
            update={
                "action": action,
                "occurred_at": NOW + timedelta(minutes=minute),
                "evidence": evidence,
            }
        )

    settled = "message:msg_1 settled delivered by token:1a2b3c4d: she has it"
    confirm = closing(ConsentAction.CONFIRM, 2, settled)
    late_refund = closing(ConsentAction.REFUND, 3, "message:msg_1")
    refund = closing(ConsentAction.REFUND, 2, "message:msg_1 settled not_delivered by x: lost")
    other = closing(ConsentAction.REFUND, 3, "message:msg_2 settled not_delivered by x: lost")

    def credits(*events: ConsentEvent) -> int:
        numbered = [(e, i) for i, e in enumerate((base, spend, *events))]
        return fold(APP, USER, "mini_template", TEMPLATE, numbered).credits

    assert credits(confirm) == 0
    assert credits(confirm, late_refund) == 0
    assert credits(refund) == 1
    assert credits(refund, late_refund) == 1
    assert credits(other) == 0


def granted(user_id: str) -> ConsentEvent:
    """An opt-in on the workcore channel, as an operator recorded it."""
    return ConsentEvent(
        app_id=APP,
        user_id=user_id,
        channel="workcore",
        template_id="order_shipped",
        action=ConsentAction.GRANT,
        occurred_at=NOW,
        source=ConsentSource.OPERATOR,
        evidence=f"form:{user_id}",
    )


async def test_a_batch_settled_not_delivered_refunds_each_recipient_it_went_to(
    store: Store,
) -> None:
    await store.append_consent_events([granted("1001"), granted("1002")], NOW)
    batch = reservation("k-batch").model_copy(
        update={
            "channel": "workcore_batch",
            "user_id": "1001",
            "template_id": "order_shipped",
            "kind": TemplateKind.LONG_TERM,
            "recipients": ("1001", "1002", "1003"),
            "consent_mode": "split",
            "ledger_channel": "workcore",
        }
    )
    message = (await store.reserve_send(batch, begin=True)).message
    unknown = AttemptResult(outcome=AttemptOutcome.UNKNOWN)
    await store.finish_attempt(message.id, unknown, CREATED)

    settled = await store.settle_message(APP, message.id, verdict(SettleOutcome.NOT_DELIVERED))

    assert settled is not None and settled.allowed == ("1001", "1002")
    for user_id in ("1001", "1002"):
        history = await store.consent_history(APP, user_id, "workcore", "order_shipped")
        assert [(e.action, e.source) for e in history][-1] == (
            ConsentAction.REFUND,
            ConsentSource.OPERATOR,
        )
        assert history[-1].evidence.startswith(f"message:{message.id} settled not_delivered")
    assert await store.consent_history(APP, "1003", "workcore", "order_shipped") == []


async def test_a_spend_cancelled_since_gives_nothing_back(store: Store) -> None:
    message = await unknown_message(store)
    cancel = accept(60 * 24 * 2).model_copy(update={"action": ConsentAction.CANCEL})
    await store.append_consent_events([cancel], SETTLED_AT)

    await store.settle_message(APP, message.id, verdict(SettleOutcome.NOT_DELIVERED))

    state = await folded_state(store)
    assert (state.credits, state.status.value) == (0, "cancelled")
