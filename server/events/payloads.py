"""The payload of each stored event, as both the push and the feed hand it on.

The shape is Standard Webhooks' (``{"type", "timestamp", "data"}``), compact UTF-8 JSON. A
notification's data is built from the stored notification when it is handed on, not when it
arrives: the intake path stays one write, and the exact bytes received stay the single source of
truth. So a consumer never meets GBK or AES: fields are decoded, ``biz_content`` is decrypted with
the app's configured key and parsed (JSON, or a life-account message's XML elements).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from server.consent.templates import TemplateRegistry
from server.credentials import AppCredentials
from server.intake.life_account_xml import xml_fields
from storage.ledger import can_send
from storage.models import ConsentStatus, ConsentSummary, EventType, StoredEvent
from storage.models.notifications import StoredNotification
from storage.timecodec import optional_datetime
from verify import VerificationError, aes_decrypt

EVENT_ID_PREFIX = "evt_"


def event_id(event: StoredEvent) -> str:
    """The event's stable id: the push's ``webhook-id`` and the feed's ``id``."""
    return f"{EVENT_ID_PREFIX}{event.id}"


def parse_event_id(text: str) -> int | None:
    """The log id an ``evt_`` id names, or None for anything else."""
    digits = text.removeprefix(EVENT_ID_PREFIX)
    if digits == text or not digits.isdigit() or len(digits) > 18:
        return None
    return int(digits)


def iso(value: datetime | None) -> str | None:
    """A time as the payloads write it: ISO 8601 UTC with milliseconds and ``Z``.

    A notification's payload writes three, on the event loop for every push: the fields are
    formatted directly, a cheaper call than ``isoformat`` and a replace."""
    if value is None:
        return None
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return _ISO_FORMAT % (
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond // 1000,
    )


_ISO_FORMAT = "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ"


class EventPayloads:
    """Builds each event's payload from what the store returned, with the apps' keys (for AES
    content) and templates (for ``can_send``)."""

    def __init__(
        self, credentials: Mapping[str, AppCredentials], templates: TemplateRegistry
    ) -> None:
        self._credentials = credentials
        self._templates = templates

    def payload(self, event: StoredEvent) -> dict[str, Any]:
        """``{"type", "timestamp", "data"}`` of one event."""
        timestamp = iso(event.created_at)
        if event.type is EventType.NOTIFICATION_RECEIVED:
            data = self._notification_data(event, timestamp)
        elif event.type is EventType.CONSENT_CHANGED:
            data = self._consent_data(event)
        else:
            data = _message_data(event)
        return {"type": event.type.value, "timestamp": timestamp, "data": data}

    def body(self, event: StoredEvent) -> bytes:
        """The payload as the bytes a push signs and sends."""
        return encode(self.payload(event))

    def _notification_data(self, event: StoredEvent, timestamp: str | None) -> dict[str, Any]:
        """``timestamp`` is the event's time as written: a notification's event is written at
        the time it was received, so that text is not formatted twice."""
        notification = event.notification
        if notification is None:  # pruned by retention: what the log itself still knows
            return {"app_id": event.app_id, "kind": event.kind, "pruned": True}
        fields = notification.fields
        fields.pop("sign", None)
        return {
            "app_id": notification.app_id,
            "notify_id": notification.dedupe_key,
            "kind": notification.kind,
            "received_at": (
                timestamp
                if notification.received_at == event.created_at
                else iso(notification.received_at)
            ),
            "occurred_at": iso(notification.occurred_at),
            "sign_type": notification.sign_type,
            "fields": fields,
            "biz_content": self._biz_content(notification, fields),
        }

    def _biz_content(self, notification: StoredNotification, fields: dict[str, str]) -> Any:
        text = fields.get("biz_content")
        if text is None:
            return None
        if fields.get("encrypt_type", "").strip():
            text = self._decrypted(notification, text)
            if text is None:
                return {"undecryptable": True}
        return decoded_content(text)

    def _decrypted(self, notification: StoredNotification, text: str) -> str | None:
        credentials = self._credentials.get(notification.app_id)
        key = None if credentials is None else credentials.policy.encrypt_key
        if key is None:  # the key was removed from the settings since
            return None
        try:
            return aes_decrypt(key, text, notification.charset)
        except VerificationError:  # the key was rotated since
            return None

    def _consent_data(self, event: StoredEvent) -> dict[str, Any]:
        data = dict(event.data or {})
        channel, template_id = str(data["channel"]), str(data["template_id"])
        state = ConsentSummary(
            channel,
            template_id,
            ConsentStatus(data["status"]),
            int(data["credits"]),
            False,
            False,
            None,
            None,
        )
        kind = self._templates.kind(event.app_id, channel, template_id)
        return {
            "app_id": event.app_id,
            "user_id": event.user_id,
            "channel": channel,
            "template_id": template_id,
            "status": state.status.value,
            "can_send": can_send(state, kind),
            "credits": state.credits,
            "action": data.get("action"),
            "source": data.get("source"),
            "occurred_at": iso(optional_datetime(data.get("occurred_at"))),
            "sequence": data.get("sequence"),
        }


def _message_data(event: StoredEvent) -> dict[str, Any]:
    data = dict(event.data or {})
    return {"app_id": event.app_id, "user_id": event.user_id, **data}


def decoded_content(text: str) -> Any:
    """``biz_content`` as a consumer wants it: JSON parsed, a life-account message's XML as its
    elements, anything else the text itself."""
    stripped = text.strip()
    if stripped.startswith(("{", "[")):
        try:
            return json.loads(stripped)
        except ValueError:
            return text
    if stripped.startswith("<"):
        try:
            return xml_fields(stripped)
        except VerificationError:
            return text
    return text


def encode(payload: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON (no ASCII escapes: consumers read Chinese text as it is).

    Every push encodes its payload, so orjson writes it; it refuses an integer beyond 64 bits
    (a ``biz_content`` may hold one), which the standard library then writes, to the same bytes.
    """
    try:
        return orjson.dumps(payload)
    except orjson.JSONEncodeError:
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
