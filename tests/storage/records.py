"""Builders of valid records for storage tests."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from storage.models import (
    ConsentAction,
    ConsentEvent,
    ConsentSource,
    NotificationRecord,
    SendReservation,
    TemplateKind,
)

NOW = datetime(2026, 11, 23, 8, 0, 0, tzinfo=UTC)


def notification(dedupe_key: str = "n-1", app_id: str = "2021000000000001") -> NotificationRecord:
    return NotificationRecord(
        app_id=app_id,
        dedupe_key=dedupe_key,
        kind="trade_status_sync",
        handler="store_only",
        raw_body=f"notify_id={dedupe_key}&subject=语雀空间 500人规模".encode(),
        charset="utf-8",
        sign_type="RSA2",
        rule="V1",
        key_label="key#0",
        occurred_at=NOW,
        received_at=NOW,
    )


def follow(user_id: str = "2088000000000001", app_id: str = "2021000000000001") -> ConsentEvent:
    return ConsentEvent(
        app_id=app_id,
        user_id=user_id,
        channel="life_account",
        template_id="follow",
        action=ConsentAction.FOLLOW,
        occurred_at=NOW,
        source=ConsentSource.ALIPAY_NOTIFY,
        evidence="notify:n-1",
    )


APP = "2021000000000001"
USER = "2088000000000001"
TEMPLATE = "T-one-time"


def accept(
    minute: int = 0,
    *,
    user_id: str = USER,
    template_id: str = TEMPLATE,
    evidence: str = "",
    app_id: str = APP,
) -> ConsentEvent:
    """A one-time (or long-term) acceptance on the mini-program channel: one more credit."""
    return ConsentEvent(
        app_id=app_id,
        user_id=user_id,
        channel="mini_template",
        template_id=template_id,
        action=ConsentAction.ACCEPT,
        occurred_at=NOW + timedelta(minutes=minute),
        source=ConsentSource.CLIENT_REPORT,
        evidence=evidence or f"report:{minute}",
    )


def reservation(
    key: str = "k-1",
    *,
    request: str = "r-1",
    user_id: str = USER,
    template_id: str = TEMPLATE,
    kind: TemplateKind = TemplateKind.ONE_TIME,
    owner: str = "worker-a",
    lease_until: datetime | None = None,
    created_at: datetime | None = None,
    app_id: str = APP,
) -> SendReservation:
    """A send; every call names a new message id (a retried request gets a new one too)."""
    created = created_at or NOW + timedelta(hours=1)
    return SendReservation(
        message_id=f"msg_{secrets.token_hex(8)}",
        app_id=app_id,
        idempotency_key=key,
        request_sha256=hashlib.sha256(request.encode()).hexdigest(),
        channel="mini_template",
        user_id=user_id,
        template_id=template_id,
        kind=kind,
        payload='{"to_user_id":"' + user_id + '","data":{"keyword1":{"value":"已发货"}}}',
        lease_owner=owner,
        lease_until=lease_until or created + timedelta(minutes=1),
        created_at=created,
    )
