"""The consent ledger's values: its events, the state they fold into, and client reports."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple

from storage.models.frozen import Frozen, Instant


class ConsentAction(StrEnum):
    """What an event of the consent log did: the fold turns these into a status and credits."""

    ACCEPT = "accept"
    REJECT = "reject"
    CANCEL = "cancel"
    SPEND = "spend"
    REFUND = "refund"
    CONFIRM = "confirm"  # a person settled a send of unknown outcome as delivered: stays spent
    FOLLOW = "follow"
    UNFOLLOW = "unfollow"
    GRANT = "grant"
    REVOKE = "revoke"


class ConsentStatus(StrEnum):
    """Where a key stands after its last status-changing event."""

    NONE = "none"
    SUBSCRIBED = "subscribed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    FOLLOWED = "followed"
    UNFOLLOWED = "unfollowed"
    GRANTED = "granted"
    REVOKED = "revoked"


class TemplateKind(StrEnum):
    """Decides what consent a send needs: a subscription, or a credit per message."""

    ONE_TIME = "one_time"
    LONG_TERM = "long_term"
    UNKNOWN = "unknown"  # reported but not registered: treated as one-time (conservative)


class ConsentChannel(StrEnum):
    """Where a message goes; each channel has its own rule of consent (``ledger.can_send``)."""

    MINI_TEMPLATE = "mini_template"
    LIFE_ACCOUNT = "life_account"
    JYM_PUSH = "jym_push"
    WORKCORE = "workcore"


OPT_IN_CHANNELS = frozenset({ConsentChannel.JYM_PUSH, ConsentChannel.WORKCORE})


class ConsentSource(StrEnum):
    """Who told the ledger: the evidence an event carries, for audits."""

    CLIENT_REPORT = "client_report"
    ALIPAY_NOTIFY = "alipay_notify"
    PLATFORM_QUERY = "platform_query"
    SEND = "send"
    OPERATOR = "operator"


class ConsentEvent(Frozen):
    """One entry of the append-only consent log of (app, user, channel, template)."""

    app_id: str
    user_id: str
    channel: str
    template_id: str
    action: ConsentAction
    occurred_at: Instant
    source: ConsentSource
    evidence: str
    keep: bool | None = None  # one-time template: "always keep this choice"
    refuse: bool | None = None  # long-term template: "reject and don't ask again"


class StoredConsentEvent(ConsentEvent):
    """An event as the log keeps it: with its id and when it was recorded."""

    id: int
    recorded_at: Instant


class ConsentState(Frozen):
    """The projection of one (app, user, channel, template): always the fold of its log."""

    app_id: str
    user_id: str
    channel: str
    template_id: str
    status: ConsentStatus = ConsentStatus.NONE
    credits: int = 0
    keep: bool = False
    refuse: bool = False
    updated_at: Instant | None = None
    last_source: ConsentSource | None = None
    # The sort key of the last event applied, and spends a refund may still give back.
    last_key: tuple[int, int, str, str, str, int] | None = None
    open_spends: tuple[str, ...] = ()


class ConsentSummary(NamedTuple):
    """What a lookup answers from: one key's state without the fold's bookkeeping
    (``last_key``, ``open_spends``), which only the writer needs.

    A plain tuple read straight from the projection's columns, not a validated model: lookups
    are the ledger's hottest reads, and reading and validating whole states was a large share of
    their time (bench/README.md). Every row it is read from was written from a validated
    ``ConsentState``.
    """

    channel: str
    template_id: str
    status: ConsentStatus
    credits: int
    keep: bool
    refuse: bool
    updated_at: datetime | None
    last_source: ConsentSource | None

    @classmethod
    def empty(cls, channel: str, template_id: str) -> ConsentSummary:
        """A key the ledger has never heard of: nothing granted."""
        return cls(channel, template_id, ConsentStatus.NONE, 0, False, False, None, None)


class SubscribeReport(Frozen):
    """A ``my.requestSubscribeMessage`` result as the mini-program reported it."""

    app_id: str
    user_id: str
    idempotency_key: str
    body_sha256: str
    body: str
    received_at: Instant


class ReportOutcome(Frozen):
    """What recording a subscribe report answered, and whether it was a replay or a conflict."""

    report_id: int
    replayed: bool
    conflict: bool
    outcome: str  # the JSON answer given the first time


# Builds the JSON answer to a subscribe report from its id and the states its events left; a
# replay of the report is given that same answer (``Store.record_subscribe_report``).
ReportAnswer = Callable[[int, list[ConsentState]], str]
