"""Verify an Alipay asynchronous notification (pure: ``now`` and all key material are passed in).

Order of checks: ``sign`` present -> ``sign_type`` accepted -> signature (V1 with each trusted key,
then V2; payment notifications are V1, app-gateway ones V2, so both are tried, as the Node SDK
does) -> freshness -> encryption. The signature covers the ciphertext, so decryption comes last.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from verify.aes import AES_KEY_SIZES, aes_decrypt
from verify.canonical import SignRule, sign_content_bytes
from verify.errors import (
    DecryptionFailed,
    EncryptionRequired,
    KeyMaterialError,
    MalformedPayload,
    SignatureMismatch,
    StaleNotification,
    UnsupportedSignType,
)
from verify.form import FormBody
from verify.signing import SignType, decode_signature, parse_sign_type, verify_decoded_signature

__all__ = [
    "BEIJING",
    "TrustedKey",
    "VerificationPolicy",
    "VerifiedNotification",
    "check_freshness",
    "parse_epoch_millis",
    "parse_notify_time",
    "verify_notification",
]

# China has had no DST since 1991, so a fixed offset is exact (and needs no tz database).
BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NOTIFY_TIME = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2})")
_MAX_TIMESTAMP_DIGITS = 13


@dataclass(frozen=True, slots=True)
class TrustedKey:
    label: str  # e.g. "key#0" or "cert:<sn>": safe to log and store
    key: RSAPublicKey = field(repr=False)


@dataclass(frozen=True, slots=True)
class VerificationPolicy:
    keys: tuple[TrustedKey, ...]  # several during rotation; order = preference
    sign_types: frozenset[SignType] = frozenset({SignType.RSA2})
    encrypt_key: bytes | None = field(default=None, repr=False)
    require_encryption: bool = False
    max_age: timedelta = timedelta(hours=48)
    max_future: timedelta = timedelta(minutes=5)

    def __post_init__(self) -> None:
        if self.encrypt_key is not None and len(self.encrypt_key) not in AES_KEY_SIZES:
            raise KeyMaterialError("AES key must be 16, 24 or 32 bytes")
        if self.require_encryption and self.encrypt_key is None:
            raise KeyMaterialError("require_encryption needs an AES key")


@dataclass(frozen=True, slots=True)
class VerifiedNotification:
    fields: Mapping[str, str]  # decoded, as received (biz_content still ciphertext if encrypted)
    biz_content: str | None  # plaintext biz_content, or None when absent
    rule: SignRule
    sign_type: SignType
    key_label: str
    charset: str
    occurred_at: datetime | None  # aware UTC
    dedupe_key: str
    encrypted: bool


def verify_notification(
    form: FormBody, policy: VerificationPolicy, now: datetime
) -> VerifiedNotification:
    """Verify a parsed notification against ``policy`` at time ``now`` (timezone-aware).

    Returns the verified notification or raises a ``verify.errors.VerificationError`` subclass.
    """
    _require_aware(now)
    fields = form.fields
    signature_b64 = _signature_field(fields)
    sign_type = _accepted_sign_type(fields.get("sign_type"), policy)
    rule, key_label, content = _match_signature(form, policy, signature_b64, sign_type)
    occurred_at = _occurred_at(fields)
    if occurred_at is not None:
        check_freshness(occurred_at, now, policy.max_age, policy.max_future)
    encrypted, biz_content = _biz_content(fields, policy, form.charset)
    return VerifiedNotification(
        fields=fields,
        biz_content=biz_content,
        rule=rule,
        sign_type=sign_type,
        key_label=key_label,
        charset=form.charset,
        occurred_at=occurred_at,
        dedupe_key=_dedupe_key(fields, content),
        encrypted=encrypted,
    )


def check_freshness(
    occurred_at: datetime, now: datetime, max_age: timedelta, max_future: timedelta
) -> None:
    """StaleNotification when older than ``max_age`` or ahead by more than ``max_future``.

    Both bounds are inclusive: exactly ``max_age`` old is still fresh.
    """
    _require_aware(occurred_at)
    _require_aware(now)
    age = now - occurred_at
    if age > max_age:
        raise StaleNotification("notification is too old")
    if -age > max_future:
        raise StaleNotification("notification time is in the future")


def parse_notify_time(value: str) -> datetime:
    """``yyyy-MM-dd HH:mm:ss`` Beijing wall time -> aware UTC, whatever the host time zone."""
    if _NOTIFY_TIME.fullmatch(value) is None:
        raise MalformedPayload("notify_time is not yyyy-MM-dd HH:mm:ss")
    try:  # the exact shape is checked above; fromisoformat parses it in C
        return datetime.fromisoformat(value).replace(tzinfo=BEIJING).astimezone(UTC)
    except (ValueError, OverflowError):  # e.g. 2019-02-30, or 0001-01-01 (before datetime.min)
        raise MalformedPayload("notify_time is not a valid date and time") from None


def parse_epoch_millis(value: str) -> datetime:
    """Epoch milliseconds (``utc_timestamp``, life-account ``CreateTime``) -> aware UTC."""
    if not (value.isascii() and value.isdigit() and len(value) <= _MAX_TIMESTAMP_DIGITS):
        raise MalformedPayload("timestamp is not epoch milliseconds")
    return _EPOCH + timedelta(milliseconds=int(value))


def _require_aware(moment: datetime) -> None:
    if moment.utcoffset() is None:
        raise ValueError("datetime must be timezone-aware")


def _signature_field(fields: Mapping[str, str]) -> str:
    value = fields.get("sign")
    if value is None or not value.strip():
        raise MalformedPayload("sign is missing")
    return value


def _accepted_sign_type(value: str | None, policy: VerificationPolicy) -> SignType:
    sign_type = parse_sign_type(value)
    if sign_type not in policy.sign_types:
        raise UnsupportedSignType(f"sign_type {sign_type.value} is not accepted for this app")
    return sign_type


def _match_signature(
    form: FormBody, policy: VerificationPolicy, signature_b64: str, sign_type: SignType
) -> tuple[SignRule, str, bytes]:
    """First (rule, key) that verifies: V1 with each key, then V2 with each key.

    Each content is built at most once, and V2 only when V1 fails (most notifications are V1).
    """
    if not policy.keys:
        raise SignatureMismatch("no trusted key is configured")
    signature = decode_signature(signature_b64)
    for rule in (SignRule.V1, SignRule.V2):
        content = sign_content_bytes(form, rule)
        for trusted in policy.keys:
            try:
                verify_decoded_signature(trusted.key, content, signature, sign_type)
            except SignatureMismatch:
                continue
            return rule, trusted.label, content
    raise SignatureMismatch("no trusted key verifies the signature")


def _occurred_at(fields: Mapping[str, str]) -> datetime | None:
    notify_time = fields.get("notify_time", "")
    if notify_time.strip():
        return parse_notify_time(notify_time)
    timestamp = fields.get("utc_timestamp", "")
    if timestamp.strip():
        return parse_epoch_millis(timestamp)
    return None


def _biz_content(
    fields: Mapping[str, str], policy: VerificationPolicy, charset: str
) -> tuple[bool, str | None]:
    """(encrypted, plaintext biz_content), after the signature has been verified."""
    biz_content = fields.get("biz_content")
    encrypt_type = fields.get("encrypt_type", "")
    if not encrypt_type.strip():
        if policy.require_encryption:
            raise EncryptionRequired("notification is not encrypted")
        return False, biz_content
    if encrypt_type != "AES":
        raise DecryptionFailed("unsupported encrypt_type")
    if policy.encrypt_key is None:
        raise DecryptionFailed("no AES key configured")
    if biz_content is None or not biz_content.strip():
        raise DecryptionFailed("encrypted notification has no biz_content")
    return True, aes_decrypt(policy.encrypt_key, biz_content, charset)


def _dedupe_key(fields: Mapping[str, str], content: bytes) -> str:
    notify_id = fields.get("notify_id", "")
    if notify_id.strip():
        return notify_id
    return "sha256:" + hashlib.sha256(content).hexdigest()
