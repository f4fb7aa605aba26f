"""Builders of valid records for storage tests."""

from __future__ import annotations

from datetime import UTC, datetime

from storage.models import ConsentAction, ConsentEvent, ConsentSource, NotificationRecord

NOW = datetime(2026, 11, 23, 8, 0, 0, tzinfo=UTC)


def notification(dedupe_key: str = "n-1", app_id: str = "2021000000000001") -> NotificationRecord:
    return NotificationRecord(
        app_id=app_id,
        dedupe_key=dedupe_key,
        kind="trade_status_sync",
        handler="store_only",
        fields={"notify_id": dedupe_key, "subject": "语雀空间 500人规模"},
        raw_body=b"notify_id=" + dedupe_key.encode(),
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
