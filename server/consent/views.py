"""What the consent ledger answers and accepts, as the /v1 API shows it.

These bodies are the ledger's views (their JSON Schemas feed /openapi.json); the ledger
builds them itself so that a lookup is serialized once, without a second mapping.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from storage.models import ConsentAction, ConsentChannel, ConsentSource, ConsentStatus, TemplateKind

UserId = str
USER_ID_PATTERN = r"^[0-9A-Za-z_-]{1,64}$"
MAX_LOOKUP_USERS = 1000


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Subscription(_Body):
    """What the ledger says about one (user, channel, template) right now."""

    template_id: str
    channel: ConsentChannel
    kind: TemplateKind
    status: ConsentStatus
    credits: int = Field(description="One-time sends left (one per acceptance); 0 for long-term.")
    can_send: bool
    keep: bool
    refuse: bool
    updated_at: datetime | None = Field(description="When the latest event happened.")
    last_source: ConsentSource | None


class SubscriptionList(_Body):
    user_id: str
    subscriptions: list[Subscription]


class HistoryEntry(_Body):
    action: ConsentAction
    occurred_at: datetime
    recorded_at: datetime
    source: ConsentSource
    evidence: str
    keep: bool | None
    refuse: bool | None


class History(_Body):
    user_id: str
    template_id: str
    channel: ConsentChannel
    events: list[HistoryEntry] = Field(description="Oldest first, in the order that decides state.")


class ConsentChange(_Body):
    template_id: str
    action: ConsentAction


class SubscribeReportAnswer(_Body):
    report_id: int
    rule: str = Field(description="The row of docs/subscribe-results.md that applied.")
    applied: bool
    reason: str
    changes: list[ConsentChange]
    subscriptions: list[Subscription]


class ConsentUpdate(_Body):
    status: Literal["granted", "revoked"]
    evidence: str = Field(min_length=1, max_length=500)
    occurred_at: datetime | None = None


class LookupRequest(_Body):
    template_id: str = Field(min_length=1, max_length=64)
    user_ids: list[str] = Field(min_length=1, max_length=MAX_LOOKUP_USERS)
    channel: ConsentChannel = ConsentChannel.MINI_TEMPLATE


class LookupItem(_Body):
    user_id: str
    can_send: bool
    credits: int
    status: ConsentStatus


class LookupAnswer(_Body):
    template_id: str
    channel: ConsentChannel
    kind: TemplateKind
    results: list[LookupItem]
