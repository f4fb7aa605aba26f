"""Valid notifications signed by the official SDK (tests/oracle.py), one builder per family."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import AsyncIterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives import padding, serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from tests.oracle import form_body, oracle_content, oracle_sign
from tests.pki import rsa_key
from tests.server.conftest import APP_ID, NOW, alipay_key

BEIJING = timezone(timedelta(hours=8))
ALIPAY_CONTENT_TYPE = "application/x-www-form-urlencoded; text/html; charset={charset}"


def trade_fields(app_id: str = APP_ID, *, when: datetime = NOW, **extra: str) -> dict[str, str]:
    """A payment notification (notify_url family, signed V1)."""
    fields = {
        "notify_time": when.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S"),
        "notify_type": "trade_status_sync",
        "notify_id": secrets.token_hex(17),
        "app_id": app_id,
        "auth_app_id": app_id,
        "charset": "utf-8",
        "version": "1.0",
        "trade_no": "2026112322001468450512505578",
        "out_trade_no": "20261123-564-57",
        "trade_status": "TRADE_SUCCESS",
        "total_amount": "0.10",
        "subject": "语雀空间 500人规模 & more=+%20",
        "fund_bill_list": '[{"amount":"0.10","fundChannel":"ALIPAYACCOUNT"}]',
        "passback_params": "",
    }
    fields.update(extra)
    return fields


def message_fields(app_id: str = APP_ID, *, when: datetime = NOW, **extra: str) -> dict[str, str]:
    """A message-service 1.1 notification (msg_method family)."""
    fields = {
        "notify_id": secrets.token_hex(17),
        "utc_timestamp": str(int(when.timestamp() * 1000)),
        "msg_method": "alipay.merchant.tradecomplain.changed",
        "app_id": app_id,
        "version": "1.1",
        "charset": "UTF-8",
        "biz_content": '{"complain_event_id":"2026112300000001","status":"MERCHANT_PROCESSING"}',
    }
    fields.update(extra)
    return fields


def life_account_fields(
    event: str,
    user_id: str = "2088000000000001",
    app_id: str = APP_ID,
    *,
    when: datetime = NOW,
    charset: str = "GBK",
) -> dict[str, str]:
    """A life-account gateway message: event follow / unfollow / verifygw (the gateway check)."""
    service = (
        "alipay.service.check" if event == "verifygw" else "alipay.mobile.public.message.notify"
    )
    xml = (
        f"<XML><AppId><![CDATA[{app_id}]]></AppId>"
        f"<FromAlipayUserId><![CDATA[{'' if event == 'verifygw' else user_id}]]></FromAlipayUserId>"
        f"<CreateTime>{int(when.timestamp() * 1000)}</CreateTime>"
        f"<MsgType><![CDATA[event]]></MsgType><EventType><![CDATA[{event}]]></EventType>"
        "<ActionParam><![CDATA[]]></ActionParam><AgreementId></AgreementId><AccountNo></AccountNo>"
        '<UserInfo><![CDATA[{"logon_id":"张**"}]]></UserInfo></XML>'
    )
    return {"service": service, "biz_content": xml, "charset": charset}


def signed(
    fields: Mapping[str, str],
    *,
    key: Any = None,
    sign_type: str = "RSA2",
    rule: str = "V1",
    charset: str = "utf-8",
) -> dict[str, str]:
    return oracle_sign(fields, key or alipay_key(), sign_type=sign_type, rule=rule, charset=charset)


async def post(
    client: TestClient[Any, Any],
    fields: Mapping[str, str],
    *,
    charset: str = "utf-8",
    header_charset: str | None = "UTF-8",
    path: str = "/alipay/notify",
    content_type: str | None = None,
    body: bytes | None = None,
    send_content_type: bool = True,
    chunked: bool = False,
) -> tuple[int, str, bytes]:
    """POST as Alipay does; returns (status, X-Subgate-Error or "", body).

    ``send_content_type=False`` sends no Content-Type header at all; ``chunked=True`` sends the
    body with ``Transfer-Encoding: chunked`` (no Content-Length).
    """
    if content_type is None:
        content_type = (
            ALIPAY_CONTENT_TYPE.format(charset=header_charset)
            if header_charset
            else "application/x-www-form-urlencoded"
        )
    data = body if body is not None else form_body(fields, charset)
    headers = {"Content-Type": content_type} if send_content_type else {}
    skip = () if send_content_type else ("Content-Type",)
    payload: Any = _in_chunks(data) if chunked else data
    response = await client.post(path, data=payload, headers=headers, skip_auto_headers=skip)
    return response.status, response.headers.get("X-Subgate-Error", ""), await response.read()


async def _in_chunks(data: bytes, size: int = 512) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def stranger_key() -> Any:
    """A key nobody configured: what a forger signs with."""
    return rsa_key(3)


def key_label(public_key: RSAPublicKey) -> str:
    """The label Subgate should store for a trusted public key, computed without ``verify``."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "key:sha256:" + hashlib.sha256(der).hexdigest()[:16]


def digest_dedupe_key(fields: Mapping[str, str], *, rule: str, charset: str) -> str:
    """The dedupe key of a notification without notify_id: sha256 of its signed content."""
    content = oracle_content(fields, rule=rule).encode(charset)
    return "sha256:" + hashlib.sha256(content).hexdigest()


def aes_encrypt(key: bytes, plaintext: str, charset: str = "utf-8") -> str:
    """Alipay content encryption done with ``cryptography`` directly (never ``verify.aes``).

    AES-CBC, 16 zero bytes as IV, PKCS#7 padding, base64.
    """
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext.encode(charset)) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(bytes(16))).encryptor()
    return base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode("ascii")


def life_account_xml(
    *,
    app_id: str = APP_ID,
    user_id: str = "2088000000000001",
    when: datetime = NOW,
    msg_type: str = "event",
    event: str = "",
    text: str = "",
) -> str:
    """The XML biz_content of a life-account message (event, or a user's text message)."""
    body = (
        f"<EventType><![CDATA[{event}]]></EventType>"
        if msg_type == "event"
        else f"<Text><Content><![CDATA[{text}]]></Content></Text>"
    )
    return (
        f"<XML><AppId><![CDATA[{app_id}]]></AppId>"
        f"<FromAlipayUserId><![CDATA[{user_id}]]></FromAlipayUserId>"
        f"<CreateTime>{int(when.timestamp() * 1000)}</CreateTime>"
        f"<MsgType><![CDATA[{msg_type}]]></MsgType>{body}</XML>"
    )


def life_account_message(biz_content: str, *, charset: str = "GBK") -> dict[str, str]:
    """An ``alipay.mobile.public.message.notify`` message carrying ``biz_content`` as given."""
    return {
        "service": "alipay.mobile.public.message.notify",
        "biz_content": biz_content,
        "charset": charset,
    }
