"""What a consumer reads in an event: decoded, decrypted and parsed, never GBK or AES."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import pytest

from server.consent.templates import TemplateRegistry
from server.credentials import AppCredentials
from server.events.cursor import decode_cursor, encode_cursor
from server.events.payloads import EventPayloads, event_id, iso, parse_event_id
from server.settings import AppSettings
from storage.models import EventPosition, EventType, StoredEvent, StoredNotification
from tests.pki import rsa_key
from verify import TrustedKey, VerificationPolicy, aes_encrypt

APP = "2021000000000001"
AES_KEY = os.urandom(16)
AT = datetime(2026, 12, 6, 8, 30, 1, 250000, tzinfo=UTC)


def payloads(aes_key: bytes | None = AES_KEY) -> EventPayloads:
    public = rsa_key(1).public_key()
    credentials = AppCredentials(
        app_id=APP,
        policy=VerificationPolicy(keys=(TrustedKey("key:alipay", public),), encrypt_key=aes_key),
        app_private_key=None,
        app_public_key_base64=None,
        app_cert_sn=None,
        alipay_root_cert_sn=None,
        life_account_reply="ack",
        gateway_url="http://127.0.0.1:1/gateway.do",
    )
    app = AppSettings.model_validate(
        {
            "app_id": APP,
            "alipay_public_key": "unused",
            "templates": [{"id": "TPL_LONG", "kind": "long_term"}],
        }
    )
    return EventPayloads({APP: credentials}, TemplateRegistry([app]))


def form(fields: dict[str, str], charset: str) -> bytes:
    return "&".join(f"{k}={quote(v, encoding=charset)}" for k, v in fields.items()).encode()


def notification_event(fields: dict[str, str], charset: str = "utf-8") -> StoredEvent:
    stored = StoredNotification(
        id=7,
        app_id=APP,
        dedupe_key=fields.get("notify_id", "sha256:x"),
        kind="trade_status_sync",
        handler="trade",
        raw_body=form(fields, charset),
        charset=charset,
        sign_type="RSA2",
        rule="public_key",
        key_label="key:alipay",
        occurred_at=AT,
        received_at=AT,
    )
    return StoredEvent(
        id=41,
        txid=0,
        type=EventType.NOTIFICATION_RECEIVED,
        app_id=APP,
        user_id=None,
        kind="trade_status_sync",
        created_at=AT,
        notification=stored,
    )


def data_of(event: StoredEvent, builder: EventPayloads | None = None) -> dict[str, Any]:
    body = (builder or payloads()).body(event)
    payload: dict[str, Any] = json.loads(body.decode("utf-8"))
    assert payload["type"] == event.type.value
    assert payload["timestamp"] == "2026-12-06T08:30:01.250Z"
    return payload["data"]  # type: ignore[no-any-return]


def test_a_gbk_notification_reads_as_text_without_its_signature() -> None:
    fields = {"notify_id": "n1", "subject": "测试商品", "biz_content": '{"a": "值"}', "sign": "S"}
    data = data_of(notification_event(fields, "gbk"))
    assert data["fields"] == {
        "notify_id": "n1",
        "subject": "测试商品",
        "biz_content": '{"a": "值"}',
    }
    assert data["biz_content"] == {"a": "值"}
    assert (data["notify_id"], data["kind"], data["sign_type"]) == (
        "n1",
        "trade_status_sync",
        "RSA2",
    )


def test_aes_content_is_decrypted_with_the_apps_key() -> None:
    secret = aes_encrypt(AES_KEY, '{"user_id": "2088"}', "utf-8")
    data = data_of(notification_event({"biz_content": secret, "encrypt_type": "AES"}))
    assert data["biz_content"] == {"user_id": "2088"}


def test_content_whose_key_is_gone_is_marked_not_guessed() -> None:
    secret = aes_encrypt(AES_KEY, '{"user_id": "2088"}', "utf-8")
    event = notification_event({"biz_content": secret, "encrypt_type": "AES"})
    assert data_of(event, payloads(aes_key=os.urandom(16)))["biz_content"] == {
        "undecryptable": True
    }


def test_a_life_account_message_reads_as_its_elements() -> None:
    xml = (
        "<XML><AppId>1</AppId><FromAlipayUserId>2088</FromAlipayUserId>"
        "<EventType>follow</EventType></XML>"
    )
    data = data_of(notification_event({"biz_content": xml}))
    assert data["biz_content"] == {"AppId": "1", "FromAlipayUserId": "2088", "EventType": "follow"}


@pytest.mark.parametrize("number", ["88.80", "2088000000000001", "123456789012345678901234567890"])
def test_numbers_in_content_survive_whatever_their_size(number: str) -> None:
    content = f'{{"amount": {number}, "note": "值"}}'
    body = payloads().body(notification_event({"biz_content": content}))
    read = json.loads(body)["data"]["biz_content"]
    assert read == json.loads(content) and "值".encode() in body and b"\\u" not in body


def test_consent_changed_says_whether_a_send_is_allowed() -> None:
    snapshot = {
        "channel": "mini_template",
        "template_id": "TPL_LONG",
        "status": "subscribed",
        "credits": 0,
        "action": "accept",
        "source": "client_report",
        "occurred_at": 1765009801250,
        "sequence": 12,
    }
    event = StoredEvent(
        id=3,
        txid=0,
        type=EventType.CONSENT_CHANGED,
        app_id=APP,
        user_id="u1",
        kind=None,
        created_at=AT,
        data=snapshot,
    )
    data = data_of(event)
    assert data["can_send"] is True and data["sequence"] == 12 and data["user_id"] == "u1"
    one_time = {**snapshot, "template_id": "TPL_ONCE", "status": "subscribed", "credits": 0}
    event = event.model_copy(update={"data": one_time})
    assert data_of(event)["can_send"] is False  # unregistered: one-time, and no credit left


def test_ids_and_cursors_round_trip_and_refuse_what_they_did_not_give() -> None:
    event = notification_event({"notify_id": "n"})
    assert parse_event_id(event_id(event)) == 41
    assert [parse_event_id(text) for text in ("41", "evt_", "evt_x1", "msg_41")] == [None] * 4
    position = EventPosition(7_000_001, 123)
    assert decode_cursor(encode_cursor(position)) == position
    assert [decode_cursor(text) for text in ("", "!!", "MS4x", "x" * 100)] == [None] * 4


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (AT, "2026-12-06T08:30:01.250Z"),
        (datetime(1, 1, 1, 0, 0, 0, 999, tzinfo=UTC), "0001-01-01T00:00:00.000Z"),
        (
            datetime(2026, 12, 6, 16, 30, 1, 999999, tzinfo=timezone(timedelta(hours=8))),
            "2026-12-06T08:30:01.999Z",
        ),
        (None, None),
    ],
)
def test_times_are_iso_utc_with_milliseconds(value: datetime | None, text: str | None) -> None:
    assert iso(value) == text
    if value is not None:  # what the standard library writes for the same instant
        expected = value.astimezone(UTC).isoformat(timespec="milliseconds")
        assert iso(value) == expected.replace("+00:00", "Z")


def test_a_notification_keeps_its_own_times_beside_the_events() -> None:
    event = notification_event({"notify_id": "n1"})
    assert event.notification is not None
    later = AT + timedelta(seconds=3)
    received = event.notification.model_copy(update={"received_at": later, "occurred_at": None})
    data = data_of(event.model_copy(update={"notification": received}))
    assert (data["received_at"], data["occurred_at"]) == ("2026-12-06T08:30:04.250Z", None)
    data = data_of(event)  # received when the event was written: the same text
    assert data["received_at"] == data["occurred_at"] == "2026-12-06T08:30:01.250Z"
