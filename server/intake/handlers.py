"""Which handler a verified notification goes to, by ``service``, ``msg_method`` or ``notify_type``.

Built-in handlers are registered exactly the way an extension would register its own. A
handler is pure: it turns a verified notification into the consent events to store with it
and the reply to send once both are committed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from storage.models import ConsentEvent
from verify import VerifiedNotification

if TYPE_CHECKING:
    from server.credentials import AppCredentials

_KIND_FIELDS = ("service", "msg_method", "notify_type", "method")


@dataclass(frozen=True, slots=True)
class Reply:
    body: bytes
    content_type: str = "text/plain"
    charset: str | None = None


SUCCESS = Reply(body=b"success")


@dataclass(frozen=True, slots=True)
class Handled:
    events: tuple[ConsentEvent, ...] = ()
    reply: Reply = field(default=SUCCESS)


class NotificationHandler(Protocol):
    name: str

    def handle(
        self, notification: VerifiedNotification, app: AppCredentials, now: datetime
    ) -> Handled: ...


class StoreOnlyHandler:
    """Everything without a dedicated handler is stored and acknowledged."""

    name = "store_only"

    def handle(
        self, notification: VerifiedNotification, app: AppCredentials, now: datetime
    ) -> Handled:
        return Handled()


class HandlerRegistry:
    def __init__(
        self, handlers: Mapping[str, NotificationHandler], default: NotificationHandler
    ) -> None:
        self._handlers = dict(handlers)
        self._default = default

    def handler_for(self, kind: str) -> NotificationHandler:
        return self._handlers.get(kind, self._default)

    def register(self, kind: str, handler: NotificationHandler) -> None:
        self._handlers[kind] = handler


def notification_kind(fields: Mapping[str, str]) -> str:
    """The dispatch key: the first non-blank of service, msg_method, notify_type, method."""
    for name in _KIND_FIELDS:
        value = fields.get(name, "").strip()
        if value:
            return value
    return "unknown"
