"""The send channel interface: every platform Subgate sends through is one module implementing it.

``prepare`` validates a request body into a ``PreparedSend`` (pure: no I/O, 422 on any problem);
the sender reserves it (limit, consent, spend and outbox row in one transaction) and calls
``deliver`` with the stored payload, as often as the outbox retries it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from pydantic import BaseModel

from server.consent.templates import TemplateRegistry
from server.credentials import AppCredentials, TopAppCredentials
from server.platforms.alipay_classic import OpenApiCaller
from server.platforms.alipay_v3 import AlipayV3Client
from server.platforms.calls import CallResult
from server.platforms.top import TopClient
from storage.models import WEEK_SECONDS, ConsentAction, ConsentMode, TemplateKind


@dataclass(frozen=True, slots=True)
class RecentActivityWarning:
    """Warn when any ``action`` event of the app on ``channel`` happened within ``within``."""

    channel: str
    action: ConsentAction
    within: timedelta
    warning: str


@dataclass(frozen=True, slots=True)
class PreparedSend:
    """A validated send: the ledger key(s) it needs consent on, and what to send.

    ``user_id`` is the one recipient; ``recipients`` (when given) all of them, and
    ``consent_mode`` says how the ledger decides (``storage.models.SendReservation``).
    ``ledger_channel`` is the ledger channel of the consent when it is not the channel's name.
    ``weekly_limit`` caps the app's messages on this channel per ``limit_window_seconds``.
    ``warnings`` always go with the answer; ``warn_if_recent`` ones only when the ledger shows
    such activity (checked by the sender, before reserving).
    """

    user_id: str
    template_id: str
    kind: TemplateKind
    payload: Mapping[str, Any]
    recipients: tuple[str, ...] = ()
    consent_mode: ConsentMode = "single"
    ledger_channel: str | None = None
    weekly_limit: int | None = None
    limit_window_seconds: int = WEEK_SECONDS
    warnings: tuple[str, ...] = ()
    warn_if_recent: tuple[RecentActivityWarning, ...] = ()


class SendChannel(Protocol):
    name: str
    # False: a TRANSIENT answer (the platform may have acted) settles the message as unknown
    # instead of retrying it; a failure to connect at all is still retried.
    retry_transient: bool

    def prepare(
        self, app_id: str, body: Mapping[str, Any], templates: TemplateRegistry, message_id: str
    ) -> PreparedSend:
        """Validate the request (422 on any problem, nothing reserved).

        ``message_id`` is derived from the app and the Idempotency-Key: the same for every retry
        of one request, so a channel may hand it to the platform as its business id.
        """

    async def deliver(
        self, app: AppCredentials, payload: Mapping[str, Any], recipients: Sequence[str]
    ) -> CallResult:
        """Make the platform call for a reserved message; ``recipients`` are those the ledger
        allowed (for ``split`` sends, a subset of what was asked)."""


@dataclass(frozen=True, slots=True)
class ChannelPlatforms:
    """What send channels are built from: one client per platform protocol (shared by every
    channel that speaks it) and the keys they sign with."""

    alipay: OpenApiCaller
    alipay_v3: AlipayV3Client
    top: TopClient
    credentials: Mapping[str, AppCredentials]
    top_apps: Mapping[str, TopAppCredentials]


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """A send channel as the registry knows it: the ``channel`` value of its requests, the body
    those requests have (``POST /v1/apps/{app_id}/messages`` and its OpenAPI schema are derived
    from these), and how it is built from the platforms."""

    name: str
    request: type[BaseModel]
    build: Callable[[ChannelPlatforms], SendChannel]
