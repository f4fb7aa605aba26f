"""Real Alipay-signed vectors (tests/vectors/): the ground truth the rest is checked against."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.oracle import form_body, oracle_verify
from verify.canonical import SignRule, sign_content, sign_content_bytes
from verify.errors import SignatureMismatch, StaleNotification
from verify.form import FormBody, parse_form
from verify.keys import load_public_key
from verify.notification import (
    TrustedKey,
    VerificationPolicy,
    parse_notify_time,
    verify_notification,
)
from verify.signing import SignType, verify_signature

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
NOTIFICATIONS = {
    "trade_status_sync_v1": "notify_trade_status_sync_v1.json",
    "servicemarket_v2": "more/notify_servicemarket_order_notify_v2.json",
    "leading_space_v1": "more/notify_trade_status_sync_v1_leading_space.json",
}
RESPONSES = [
    "more/response_gopay_sync_rsa2.json",
    "more/response_nodejs_open_file_upload_rsa2.json",
]
OTHER_RULE = {SignRule.V1: SignRule.V2, SignRule.V2: SignRule.V1}


def _vector(name: str) -> Any:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


def _form(vector: Any) -> FormBody:
    """The raw body when the vector has one; otherwise the params form-encoded in their charset."""
    if "raw_body" in vector:
        return parse_form(vector["raw_body"].encode("ascii"))
    return parse_form(form_body(vector["params"], vector["charset"]))


def _policy(vector: Any) -> VerificationPolicy:
    key = load_public_key(vector["alipay_public_key"])
    return VerificationPolicy(keys=(TrustedKey("alipay", key),))


def _near(vector: Any) -> datetime:
    return parse_notify_time(vector["params"]["notify_time"]) + timedelta(minutes=1)


@pytest.fixture(params=list(NOTIFICATIONS), ids=list(NOTIFICATIONS))
def notification(request: pytest.FixtureRequest) -> Any:
    return _vector(NOTIFICATIONS[request.param])


def test_sign_content_is_byte_exact(notification: Any) -> None:
    rule = SignRule(notification["rule"])
    expected = notification["expected_sign_content"]
    assert sign_content(notification["params"], rule) == expected
    assert sign_content_bytes(_form(notification), rule) == expected.encode("utf-8")


def test_verifies_with_the_documented_rule_only(notification: Any) -> None:
    rule = SignRule(notification["rule"])
    result = verify_notification(_form(notification), _policy(notification), _near(notification))
    assert result.rule is rule
    assert result.sign_type is SignType.RSA2
    assert result.key_label == "alipay"
    assert result.dedupe_key == notification["params"]["notify_id"]
    assert result.occurred_at == parse_notify_time(notification["params"]["notify_time"])
    with pytest.raises(SignatureMismatch):  # the other rule's content does not verify
        verify_signature(
            load_public_key(notification["alipay_public_key"]),
            sign_content_bytes(_form(notification), OTHER_RULE[rule]),
            notification["params"]["sign"],
            SignType.RSA2,
        )


def test_legacy_digest_does_not_verify(notification: Any) -> None:
    policy = VerificationPolicy(keys=_policy(notification).keys, sign_types=frozenset(SignType))
    form = _form(notification)
    forged = parse_form(form_body(dict(form.fields) | {"sign_type": "RSA"}))
    with pytest.raises(SignatureMismatch):
        verify_notification(forged, policy, _near(notification))


def test_is_stale_today(notification: Any) -> None:
    with pytest.raises(StaleNotification) as info:
        verify_notification(
            _form(notification), _policy(notification), datetime(2026, 1, 1, tzinfo=UTC)
        )
    assert info.value.code == "stale"


def test_oracle_agrees_on_the_vectors(notification: Any) -> None:
    key = load_public_key(notification["alipay_public_key"])
    content = notification["expected_sign_content"].encode("utf-8")
    assert oracle_verify(content, notification["params"]["sign"], key)


def test_leading_space_raw_body_is_parsed_unchanged() -> None:
    vector = _vector(NOTIFICATIONS["leading_space_v1"])
    form = parse_form(vector["raw_body"].encode("ascii"))
    assert dict(form.fields) == vector["params"]
    assert form.fields["subject"].startswith(" LEADERS")
    assert "%2B" in vector["raw_body"]  # the sign value carries an escaped '+'


def test_leading_space_trimmed_values_do_not_verify() -> None:
    vector = _vector(NOTIFICATIONS["leading_space_v1"])
    trimmed = parse_form(form_body({k: v.strip() for k, v in vector["params"].items()}))
    with pytest.raises(SignatureMismatch):
        verify_notification(trimmed, _policy(vector), _near(vector))


@pytest.mark.parametrize("name", RESPONSES)
def test_response_signature(name: str) -> None:
    vector = _vector(name)
    key = load_public_key(vector["alipay_public_key"])
    content = vector["signed_content"].encode("utf-8")
    verify_signature(key, content, vector["sign"], SignType.RSA2)
    with pytest.raises(SignatureMismatch):
        verify_signature(key, content, vector["sign"], SignType.RSA)


def test_response_node_text_is_inside_the_raw_response() -> None:
    vector = _vector("more/response_nodejs_open_file_upload_rsa2.json")
    raw = vector["raw_response"]
    assert f'"{vector["response_key"]}":{vector["signed_content"]},"sign"' in raw
