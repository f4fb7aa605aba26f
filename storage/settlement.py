"""The rules of settling a message whose outcome is ``unknown``, which every backend applies
alike: pure, no I/O.

Only an ``unknown`` message may be settled, once: its status becomes final
(``SettleOutcome.status``) and each recipient's ledger gets one ``operator`` event naming the
message, who settled it and why. ``not_delivered`` is a ``refund`` (the spend's credit comes
back, as a definite failure's would); ``delivered`` a ``confirm`` (the credit stays spent, and
no later refund can give it back). Each backend reads the message and the recipients' states in
the settling transaction and holds them until commit (SQLite: the single writer; PostgreSQL: the
message's row lock), so of two concurrent settles exactly one finds the message ``unknown``.
"""

from __future__ import annotations

from collections.abc import Mapping

from storage.errors import MessageNotUnknown
from storage.models import (
    ConsentAction,
    ConsentEvent,
    ConsentSource,
    ConsentState,
    MessageRecord,
    MessageStatus,
    Settlement,
    SettleOutcome,
)
from storage.sending import ledger_event, not_before
from storage.timecodec import to_millis

_ACTION = {
    SettleOutcome.DELIVERED: ConsentAction.CONFIRM,
    SettleOutcome.NOT_DELIVERED: ConsentAction.REFUND,
}


def check_settleable(message: MessageRecord) -> None:
    """Raise ``MessageNotUnknown`` unless the message waits to be settled."""
    if message.status is not MessageStatus.UNKNOWN:
        raise MessageNotUnknown(
            f"only a message whose status is unknown can be settled; this one is "
            f"{message.status.value}"
        )


def evidence(message: MessageRecord, settlement: Settlement) -> str:
    """``message:<id>`` first (the spend it is about, ``storage.ledger.spend_of``), then who
    settled it and why."""
    return (
        f"message:{message.id} settled {settlement.outcome.value} by "
        f"{settlement.settled_by}: {settlement.reason}"
    )


def settle_events(
    message: MessageRecord, settlement: Settlement, states: Mapping[str, ConsentState]
) -> list[ConsentEvent]:
    """One ``operator`` event per recipient, each stamped after its key's latest event (its
    spend is in the log), so each closes exactly the spend of this message.

    ``states``: each allowed recipient's current state, read in the settling transaction.
    """
    action = _ACTION[settlement.outcome]
    text = evidence(message, settlement)
    return [
        ledger_event(
            message, user_id, action, not_before(states[user_id], settlement.settled_at)
        ).model_copy(update={"source": ConsentSource.OPERATOR, "evidence": text})
        for user_id in message.allowed
    ]


def settled_values(message_id: str, settlement: Settlement) -> tuple[str | int, ...]:
    """The parameters of ``OutboxStatements.settle_message``: the settle is the message's
    last update."""
    at = to_millis(settlement.settled_at)
    status = settlement.outcome.status.value
    return (status, settlement.reason, settlement.settled_by, at, at, message_id)
