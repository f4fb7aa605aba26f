"""A stand-in Alipay: build notifications, sign them as Alipay does, post them to a gateway.

Used by ``python run.py simulate``. Signing follows the Java SDK rules Alipay's own servers
use (sorted ``k=v``, empty values dropped, bytes in the declared charset); payment-style
notifications are signed without ``sign_type`` (V1), gateway messages with it (V2).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from urllib.parse import quote_plus

import aiohttp
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from verify import SignRule, SignType, sign, sign_content

KINDS = ("message", "trade", "follow", "unfollow", "check")
BEIJING = timezone(timedelta(hours=8))
_CHARSET_LABELS = {"utf-8": "UTF-8", "gbk": "GBK", "gb18030": "GB18030"}


def build_fields(
    kind: str, *, app_id: str, user_id: str, now: datetime, charset: str = "utf-8"
) -> tuple[dict[str, str], SignRule]:
    """Unsigned fields of a realistic notification of ``kind``, and the rule Alipay signs it by."""
    label = _CHARSET_LABELS.get(charset, charset.upper())
    if kind == "trade":
        return _trade(app_id, user_id, now, label), SignRule.V1
    if kind == "message":
        return _message(app_id, user_id, now, label), SignRule.V1
    if kind in ("follow", "unfollow", "check"):
        return _life_account(kind, app_id, user_id, now, label), SignRule.V2
    raise ValueError(f"unknown notification kind {kind!r}; expected one of {', '.join(KINDS)}")


def sign_as_alipay(
    fields: Mapping[str, str], key: RSAPrivateKey, sign_type: SignType, rule: SignRule, charset: str
) -> dict[str, str]:
    signed = {**fields, "sign_type": sign_type.value}
    content = sign_content(signed, rule).encode(charset)
    return {**signed, "sign": sign(key, content, sign_type)}


def encode_form(fields: Mapping[str, str], charset: str) -> bytes:
    pairs = (f"{quote_plus(k)}={quote_plus(v, encoding=charset)}" for k, v in fields.items())
    return "&".join(pairs).encode("ascii")


def content_type(charset: str, *, with_charset: bool = True) -> str:
    """Alipay's own, non-standard header, as captured in the wild."""
    if not with_charset:
        return "application/x-www-form-urlencoded"
    label = _CHARSET_LABELS.get(charset, charset.upper())
    return f"application/x-www-form-urlencoded; text/html; charset={label}"


async def post_notification(
    url: str, body: bytes, charset: str, *, with_charset: bool = True
) -> tuple[int, str, bytes]:
    """POST like Alipay does; returns (status, X-Subgate-Error or "", body)."""
    headers = {
        "Content-Type": content_type(charset, with_charset=with_charset),
        "User-Agent": "Mozilla/4.0",
    }
    timeout = aiohttp.ClientTimeout(total=15)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.post(url, data=body, headers=headers) as response,
    ):
        return response.status, response.headers.get("X-Subgate-Error", ""), await response.read()


def _trade(app_id: str, user_id: str, now: datetime, label: str) -> dict[str, str]:
    stamp = now.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")
    return {
        "notify_time": stamp,
        "notify_type": "trade_status_sync",
        "notify_id": _notify_id(),
        "app_id": app_id,
        "auth_app_id": app_id,
        "charset": label,
        "version": "1.0",
        "trade_no": "2026" + secrets.token_hex(12),
        "out_trade_no": "SIM-" + secrets.token_hex(6),
        "trade_status": "TRADE_SUCCESS",
        "total_amount": "0.01",
        "buyer_id": user_id,
        "subject": "Subgate 模拟订单",
        "gmt_payment": stamp,
    }


def _message(app_id: str, user_id: str, now: datetime, label: str) -> dict[str, str]:
    biz = {"user_id": user_id, "note": "Subgate 模拟消息", "event": "simulated"}
    return {
        "notify_id": _notify_id(),
        "utc_timestamp": str(int(now.timestamp() * 1000)),
        "msg_method": "alipay.open.mini.message.simulated",
        "app_id": app_id,
        "version": "1.1",
        "biz_content": json.dumps(biz, ensure_ascii=False, separators=(",", ":")),
        "charset": label,
    }


def _life_account(
    kind: str, app_id: str, user_id: str, now: datetime, label: str
) -> dict[str, str]:
    event = "verifygw" if kind == "check" else kind
    from_user = "" if kind == "check" else user_id
    xml = (
        f"<XML><AppId><![CDATA[{app_id}]]></AppId><FromUserId><![CDATA[{from_user}]]></FromUserId>"
        f"<CreateTime>{int(now.timestamp() * 1000)}</CreateTime>"
        "<MsgType><![CDATA[event]]></MsgType>"
        f"<EventType><![CDATA[{event}]]></EventType><ActionParam></ActionParam>"
        "<AgreementId></AgreementId><AccountNo></AccountNo></XML>"
    )
    service = "alipay.service.check" if kind == "check" else "alipay.mobile.public.message.notify"
    return {"service": service, "biz_content": xml, "charset": label}


def _notify_id() -> str:
    return secrets.token_hex(17)
