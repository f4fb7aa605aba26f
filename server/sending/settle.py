"""Settling a message whose outcome is ``unknown``: the one operation behind the API's
``POST /v1/apps/{app_id}/messages/{message_id}:settle`` and the console's button.

    view = await sender.settle(app_id, message_id, "not_delivered", reason, grant.identity)

An ``unknown`` message may have been delivered, so it is never retried and its credit stays
spent until a person, having asked the user or the platform, says what happened:
``delivered`` keeps the credit spent, ``not_delivered`` refunds it (a one-time template gets its
credit back; a long-term one has none to get). The store does it atomically, once
(``Store.settle_message``); this module validates the verdict and names the refusals.
"""

from __future__ import annotations

import re
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from server.errors import MessageNotFound
from server.sending.messages import MessageView
from server.web.json_body import parse_model
from storage import Store
from storage.models import Settlement, SettleOutcome

REASON_MAX = 500
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class SettleRequest(BaseModel):
    """A person's verdict on a message whose outcome is unknown."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    outcome: SettleOutcome = Field(
        description="delivered: the credit stays spent; not_delivered: it is refunded."
    )
    reason: str = Field(
        min_length=1,
        max_length=REASON_MAX,
        description="Why: kept as evidence in the ledger and on the message.",
    )

    @field_validator("reason")
    @classmethod
    def _one_readable_line(cls, reason: str) -> str:
        if not reason.strip():
            raise ValueError("reason must not be blank")
        if _CONTROL.search(reason):
            raise ValueError("reason must be one line without control characters")
        return reason.strip()


def settle_request(outcome: object, reason: object) -> SettleRequest:
    """The verdict from loose values (a form's, a command line's); ``ValidationFailed`` names
    what is wrong."""
    return parse_model(SettleRequest, {"outcome": outcome, "reason": reason})


async def settle_message(
    store: Store,
    app_id: str,
    message_id: str,
    request: SettleRequest,
    settled_by: str,
    now: datetime,
) -> MessageView:
    """Settle the app's ``unknown`` message as ``request`` says, recording ``settled_by`` (an
    identity, never a secret) as who did it.

    Raises ``MessageNotFound`` when the app has no such message, ``MessageNotUnknown`` (409)
    when it is not ``unknown`` (settled already, or any other status): nothing is written then.
    """
    settlement = Settlement(
        outcome=request.outcome, reason=request.reason, settled_by=settled_by, settled_at=now
    )
    message = await store.settle_message(app_id, message_id, settlement)
    if message is None:
        raise MessageNotFound("this app has no message of this id")
    return MessageView.of(message)
