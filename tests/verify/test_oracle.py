"""Cross-checks against the official SDK (tests/oracle.py): it signs, we verify, and back."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest

from tests.oracle import form_body, oracle_content, oracle_sign, oracle_verify
from tests.pki import rsa_key
from verify.canonical import SignRule, sign_content_bytes
from verify.errors import UnsupportedSignType
from verify.form import parse_form
from verify.notification import (
    TrustedKey,
    VerificationPolicy,
    VerifiedNotification,
    verify_notification,
)
from verify.signing import SignType, sign

NOW = datetime(2024, 5, 1, 4, 1, tzinfo=UTC)
BASE = {
    "notify_id": "2024050100222120000000000000000002",
    "notify_time": "2024-05-01 12:00:00",
    "notify_type": "trade_status_sync",
    "app_id": "2021000000000001",
    "version": "1.0",
    "subject": "会员充值 a&b=c+d %20 100%",
    "passback_params": "k1=v1&k2=v+2%3D",
    "fund_bill_list": '[{"amount":"0.10","fundChannel":"ALIPAYACCOUNT"}]',
}
RSA2_ONLY = VerificationPolicy(keys=(TrustedKey("key#0", rsa_key(0).public_key()),))
BOTH = VerificationPolicy(keys=RSA2_ONLY.keys, sign_types=frozenset(SignType))


def _verify(
    fields: Mapping[str, str],
    *,
    charset: str = "utf-8",
    header: str | None = None,
    policy: VerificationPolicy = RSA2_ONLY,
) -> VerifiedNotification:
    return verify_notification(parse_form(form_body(fields, charset), header), policy, NOW)


@pytest.mark.parametrize("rule", ["V1", "V2"])
def test_utf8_with_reserved_characters(rule: str) -> None:
    fields = oracle_sign(BASE | {"charset": "utf-8"}, rsa_key(0), rule=rule)
    result = _verify(fields)
    assert result.rule is SignRule(rule)
    assert result.fields["subject"] == BASE["subject"]
    assert result.fields["passback_params"] == BASE["passback_params"]


@pytest.mark.parametrize("header", [None, "UTF-8"], ids=["no-header", "conflicting-header"])
def test_gbk_body_field_wins(header: str | None) -> None:
    fields = oracle_sign(BASE | {"charset": "GBK"}, rsa_key(0), charset="gbk")
    result = _verify(fields, charset="gbk", header=header)
    assert result.charset == "gbk"
    assert result.fields["subject"] == BASE["subject"]


def test_gb18030_with_characters_outside_gbk() -> None:
    extended = BASE | {"charset": "GB18030", "subject": "𠮷野家 €"}
    fields = oracle_sign(extended, rsa_key(0), charset="gb18030")
    result = _verify(fields, charset="gb18030")
    assert result.charset == "gb18030"
    assert result.fields["subject"] == "𠮷野家 €"


def test_legacy_rsa_when_allowed() -> None:
    fields = oracle_sign(BASE, rsa_key(0), sign_type="RSA")
    assert _verify(fields, policy=BOTH).sign_type is SignType.RSA


def test_legacy_rsa_when_not_allowed() -> None:
    fields = oracle_sign(BASE, rsa_key(0), sign_type="RSA")
    with pytest.raises(UnsupportedSignType) as info:
        _verify(fields)
    assert info.value.code == "unsupported_sign_type"


@pytest.mark.parametrize("rule", ["V1", "V2"])
def test_whitespace_only_value_is_dropped(rule: str) -> None:
    fields = oracle_sign(BASE | {"body": "   ", "empty": ""}, rsa_key(0), rule=rule)
    form = parse_form(form_body(fields))
    assert form.fields["body"] == "   "  # present on the wire, absent from the content
    assert b"body=" not in sign_content_bytes(form, SignRule(rule))
    assert _verify(fields).rule is SignRule(rule)


def test_leading_space_is_kept() -> None:
    fields = oracle_sign(BASE | {"subject": "  LEADERS "}, rsa_key(0))
    assert _verify(fields).fields["subject"] == "  LEADERS "


def test_key_rotation_second_key_verifies() -> None:
    policy = VerificationPolicy(
        keys=(
            TrustedKey("key#new", rsa_key(1).public_key()),
            TrustedKey("key#old", rsa_key(0).public_key()),
        )
    )
    fields = oracle_sign(BASE, rsa_key(0), rule="V2")
    result = _verify(fields, policy=policy)
    assert (result.key_label, result.rule) == ("key#old", SignRule.V2)


@pytest.mark.parametrize("sign_type", list(SignType), ids=str)
def test_our_signature_verifies_with_the_sdk(sign_type: SignType) -> None:
    key = rsa_key(0)
    content = oracle_content(BASE | {"sign_type": sign_type.value}, rule="V2").encode()
    signature = sign(key, content, sign_type)
    assert oracle_verify(content, signature, key.public_key())
    assert not oracle_verify(content + b"x", signature, key.public_key())
    assert not oracle_verify(content, signature, rsa_key(1).public_key())


@pytest.mark.parametrize("sign_type", list(SignType), ids=str)
@pytest.mark.parametrize("charset", ["utf-8", "gbk"])
def test_our_signature_is_byte_identical_to_the_sdk(sign_type: SignType, charset: str) -> None:
    fields = oracle_sign(
        BASE | {"charset": charset}, rsa_key(0), sign_type=sign_type.value, charset=charset
    )
    form = parse_form(form_body(fields, charset))
    ours = sign(rsa_key(0), sign_content_bytes(form, SignRule.V1), sign_type)
    assert ours == fields["sign"]


def test_sdk_signature_does_not_survive_time_travel() -> None:
    fields = oracle_sign(BASE, rsa_key(0))
    later = NOW + timedelta(days=3)
    with pytest.raises(Exception, match="too old"):
        verify_notification(parse_form(form_body(fields)), RSA2_ONLY, later)
