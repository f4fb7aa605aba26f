from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.oracle import form_body, oracle_sign
from tests.pki import rsa_key
from verify.aes import aes_encrypt
from verify.canonical import SignRule, sign_content_bytes
from verify.errors import KeyMaterialError, VerificationError
from verify.form import FormBody, parse_form
from verify.notification import (
    TrustedKey,
    VerificationPolicy,
    check_freshness,
    parse_epoch_millis,
    parse_notify_time,
    verify_notification,
)
from verify.signing import SignType

NOTIFY_TIME = "2024-05-01 12:00:00"  # Beijing
OCCURRED = datetime(2024, 5, 1, 4, 0, 0, tzinfo=UTC)
NOW = OCCURRED + timedelta(minutes=1)
AES_KEY = bytes(range(16))
BIZ = '{"msg":"订阅成功","user_id":"2088000000000001"}'

BASE = {
    "notify_id": "2024050100222120000000000000000001",
    "notify_time": NOTIFY_TIME,
    "notify_type": "trade_status_sync",
    "app_id": "2021000000000001",
    "charset": "utf-8",
    "version": "1.0",
    "subject": "会员 & 充值 + 100%",
    "total_amount": "100.00",
}


def _key(index: int = 0) -> RSAPrivateKey:
    return rsa_key(index)


def _policy(*indices: int, **overrides: object) -> VerificationPolicy:
    keys = tuple(TrustedKey(f"key#{i}", _key(i).public_key()) for i in indices or (0,))
    return VerificationPolicy(keys=keys, **overrides)  # type: ignore[arg-type]


def _signed(
    fields: Mapping[str, str] = BASE, *, key: int = 0, charset: str = "utf-8", **kw: str
) -> dict[str, str]:
    return oracle_sign(fields, _key(key), charset=charset, **kw)


def _form(fields: Mapping[str, str], charset: str = "utf-8") -> FormBody:
    return parse_form(form_body(fields, charset))


def _refused(form: FormBody, policy: VerificationPolicy, now: datetime = NOW) -> str:
    with pytest.raises(VerificationError) as info:
        verify_notification(form, policy, now)
    return info.value.code


# --- happy paths ---


def test_verified_notification_fields() -> None:
    fields = _signed()
    result = verify_notification(_form(fields), _policy(), NOW)
    assert result.fields == fields
    assert result.rule is SignRule.V1
    assert result.sign_type is SignType.RSA2
    assert result.key_label == "key#0"
    assert result.charset == "utf-8"
    assert result.occurred_at == OCCURRED
    assert result.dedupe_key == BASE["notify_id"]
    assert result.encrypted is False
    assert result.biz_content is None


def test_plain_biz_content_is_returned() -> None:
    fields = _signed({**BASE, "biz_content": BIZ})
    assert verify_notification(_form(fields), _policy(), NOW).biz_content == BIZ


def test_v2_rule_is_reported() -> None:
    result = verify_notification(_form(_signed(rule="V2")), _policy(), NOW)
    assert result.rule is SignRule.V2


def test_key_rotation_reports_the_key_that_verified() -> None:
    result = verify_notification(_form(_signed(key=0)), _policy(1, 0), NOW)
    assert result.key_label == "key#0"


def test_key_rotation_with_different_key_sizes() -> None:
    fields = oracle_sign(BASE, rsa_key(5, bits=1024))
    keys = (
        TrustedKey("new", _key(0).public_key()),
        TrustedKey("old", rsa_key(5, bits=1024).public_key()),
    )
    assert verify_notification(_form(fields), VerificationPolicy(keys=keys), NOW).key_label == "old"


def test_dedupe_key_without_notify_id_hashes_the_verified_content() -> None:
    fields = _signed({k: v for k, v in BASE.items() if k != "notify_id"} | {"notify_id": "  "})
    form = _form(fields)
    result = verify_notification(form, _policy(), NOW)
    digest = hashlib.sha256(sign_content_bytes(form, SignRule.V1)).hexdigest()
    assert result.dedupe_key == "sha256:" + digest


def test_inputs_are_not_mutated() -> None:
    form = _form(_signed({**BASE, "empty": ""}))
    before = (dict(form.fields), dict(form.raw_fields))
    verify_notification(form, _policy(), NOW)
    assert (dict(form.fields), dict(form.raw_fields)) == before


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_notification(_form(_signed()), _policy(), datetime(2024, 5, 1))


# --- one-change mutations ---


def _flip_sign_byte(fields: dict[str, str]) -> dict[str, str]:
    raw = bytearray(base64.b64decode(fields["sign"]))
    raw[-1] ^= 0x80
    return fields | {"sign": base64.b64encode(bytes(raw)).decode()}


def _gbk_signed_declared_utf8() -> bytes:
    fields = _signed(charset="gbk")  # charset field says utf-8, signature is over GBK bytes
    return form_body(fields, "utf-8")


def _gbk_signed_gbk_body_declared_utf8() -> bytes:
    return form_body(_signed(charset="gbk"), "gbk")  # GBK bytes on the wire, field says utf-8


MUTATIONS: dict[str, tuple[Callable[[], bytes], VerificationPolicy, str]] = {
    "tampered-value": (
        lambda: form_body(_signed() | {"total_amount": "1000.00"}),
        _policy(),
        "bad_signature",
    ),
    "added-field": (lambda: form_body(_signed() | {"extra": "1"}), _policy(), "bad_signature"),
    "removed-field": (
        lambda: form_body({k: v for k, v in _signed().items() if k != "subject"}),
        _policy(),
        "bad_signature",
    ),
    "flipped-sign-byte": (
        lambda: form_body(_flip_sign_byte(_signed())),
        _policy(),
        "bad_signature",
    ),
    "truncated-sign": (
        lambda: form_body(_signed() | {"sign": _signed()["sign"][:-8]}),
        _policy(),
        "bad_signature",
    ),
    "sign-not-base64": (
        lambda: form_body(_signed() | {"sign": "@@not-base64@@"}),
        _policy(),
        "bad_signature",
    ),
    "wrong-key": (lambda: form_body(_signed(key=1)), _policy(0), "bad_signature"),
    "wrong-charset-declared": (_gbk_signed_declared_utf8, _policy(), "bad_signature"),
    "wrong-charset-undecodable": (_gbk_signed_gbk_body_declared_utf8, _policy(), "malformed"),
    "empty-key-set": (lambda: form_body(_signed()), VerificationPolicy(keys=()), "bad_signature"),
    "sign-missing": (
        lambda: form_body({k: v for k, v in _signed().items() if k != "sign"}),
        _policy(),
        "malformed",
    ),
    "sign-blank": (lambda: form_body(_signed() | {"sign": " "}), _policy(), "malformed"),
    "sign-type-missing": (
        lambda: form_body({k: v for k, v in _signed().items() if k != "sign_type"}),
        _policy(),
        "unsupported_sign_type",
    ),
    "sign-type-sm2": (
        lambda: form_body(_signed() | {"sign_type": "SM2"}),
        _policy(),
        "unsupported_sign_type",
    ),
    "sign-type-lower-case": (
        lambda: form_body(_signed() | {"sign_type": "rsa2"}),
        _policy(),
        "unsupported_sign_type",
    ),
    "rsa-not-allowed": (
        lambda: form_body(_signed(sign_type="RSA")),
        _policy(),
        "unsupported_sign_type",
    ),
    "rsa2-signature-declared-rsa": (
        lambda: form_body(_signed() | {"sign_type": "RSA"}),
        _policy(sign_types=frozenset(SignType)),
        "bad_signature",
    ),
    "sign-type-changed-under-v2": (
        lambda: form_body(_signed(sign_type="RSA", rule="V2") | {"sign_type": "RSA2"}),
        _policy(sign_types=frozenset(SignType)),
        "bad_signature",
    ),
}


@pytest.mark.parametrize("case", list(MUTATIONS))
def test_mutation_is_refused(case: str) -> None:
    build, policy, code = MUTATIONS[case]
    body = build()
    with pytest.raises(VerificationError) as info:
        verify_notification(parse_form(body), policy, NOW)
    assert info.value.code == code


def test_refusal_messages_do_not_leak_the_signature() -> None:
    fields = _signed(key=1)
    with pytest.raises(VerificationError) as info:
        verify_notification(_form(fields), _policy(0), NOW)
    assert fields["sign"][:20] not in str(info.value)


# --- order of checks ---


@pytest.mark.parametrize(
    ("fields", "policy", "now", "code"),
    [
        pytest.param(
            {k: v for k, v in BASE.items()} | {"sign_type": "SM2"},
            _policy(),
            NOW,
            "malformed",
            id="missing-sign-before-sign-type",
        ),
        pytest.param(
            _signed(key=1) | {"sign_type": "SM2"},
            _policy(),
            NOW,
            "unsupported_sign_type",
            id="sign-type-before-signature",
        ),
        pytest.param(
            _signed(key=1),
            _policy(),
            NOW + timedelta(days=30),
            "bad_signature",
            id="signature-before-freshness",
        ),
        pytest.param(
            _signed(),
            _policy(encrypt_key=AES_KEY, require_encryption=True),
            NOW + timedelta(days=30),
            "stale",
            id="freshness-before-encryption",
        ),
    ],
)
def test_order_of_checks(
    fields: dict[str, str], policy: VerificationPolicy, now: datetime, code: str
) -> None:
    assert _refused(_form(fields), policy, now) == code


# --- time ---


def test_utc_timestamp_is_used_without_notify_time() -> None:
    millis = str(int(OCCURRED.timestamp() * 1000) + 123)
    base = {k: v for k, v in BASE.items() if k != "notify_time"} | {"utc_timestamp": millis}
    result = verify_notification(_form(_signed(base)), _policy(), NOW)
    assert result.occurred_at == OCCURRED + timedelta(milliseconds=123)


def test_notify_time_wins_over_utc_timestamp() -> None:
    fields = _signed(BASE | {"utc_timestamp": "1000"})
    assert verify_notification(_form(fields), _policy(), NOW).occurred_at == OCCURRED


def test_no_time_field_means_no_freshness_check() -> None:
    base = {k: v for k, v in BASE.items() if k != "notify_time"} | {"notify_time": " "}
    result = verify_notification(_form(_signed(base)), _policy(), NOW + timedelta(days=999))
    assert result.occurred_at is None


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"notify_time": "2024-05-01T12:00:00"}, id="iso-notify-time"),
        pytest.param({"notify_time": "2024-02-30 12:00:00"}, id="impossible-date"),
        pytest.param({"utc_timestamp": "1714536000.0"}, id="fractional-timestamp"),
        pytest.param({"utc_timestamp": "-1714536000000"}, id="negative-timestamp"),
        pytest.param({"utc_timestamp": "17145360000000"}, id="14-digit-timestamp"),
        pytest.param({"utc_timestamp": "１７１４５３６０００"}, id="full-width-digits"),
    ],
)
def test_malformed_time_fields(fields: dict[str, str]) -> None:
    base = {k: v for k, v in BASE.items() if k != "notify_time"} | fields
    assert _refused(_form(_signed(base)), _policy()) == "malformed"


@pytest.mark.parametrize(
    ("delta", "fresh"),
    [
        pytest.param(timedelta(hours=48), True, id="exactly-max-age"),
        pytest.param(timedelta(hours=48, seconds=1), False, id="max-age-plus-1s"),
        pytest.param(-timedelta(minutes=5), True, id="exactly-max-future"),
        pytest.param(-timedelta(minutes=5, seconds=1), False, id="max-future-plus-1s"),
        pytest.param(timedelta(0), True, id="now"),
    ],
)
def test_freshness_boundaries(delta: timedelta, fresh: bool) -> None:
    policy = _policy()
    form = _form(_signed())
    now = OCCURRED + delta
    if fresh:
        verify_notification(form, policy, now)
        check_freshness(OCCURRED, now, policy.max_age, policy.max_future)
    else:
        assert _refused(form, policy, now) == "stale"


def test_check_freshness_custom_window_and_naive_datetimes() -> None:
    check_freshness(OCCURRED, OCCURRED + timedelta(seconds=10), timedelta(seconds=10), timedelta(0))
    with pytest.raises(VerificationError) as info:
        check_freshness(OCCURRED, OCCURRED - timedelta(seconds=1), timedelta(1), timedelta(0))
    assert info.value.code == "stale"
    with pytest.raises(ValueError, match="timezone-aware"):
        check_freshness(OCCURRED.replace(tzinfo=None), NOW, timedelta(1), timedelta(0))


def test_parse_notify_time_is_beijing_time() -> None:
    assert parse_notify_time("2019-08-15 15:56:25") == datetime(2019, 8, 15, 7, 56, 25, tzinfo=UTC)
    assert parse_notify_time("2024-01-01 03:00:00") == datetime(2023, 12, 31, 19, tzinfo=UTC)


@pytest.fixture
def far_away_host_tz(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The host runs at UTC-11 (a POSIX TZ rule: needs no tz database)."""
    monkeypatch.setenv("TZ", "XST+11")
    time.tzset()
    try:
        yield
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.usefixtures("far_away_host_tz")
def test_notify_time_ignores_host_time_zone() -> None:
    assert time.timezone == 11 * 3600  # the host zone really changed
    assert parse_notify_time("2019-08-15 15:56:25") == datetime(2019, 8, 15, 7, 56, 25, tzinfo=UTC)
    verify_notification(_form(_signed()), _policy(), NOW)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "2019-08-15",
        "2019-8-15 15:56:25",
        "2019-08-15 15:56",
        "2019-08-15 24:00:00",
        "2019-13-01 00:00:00",
        " 2019-08-15 15:56:25",
        "2019-08-15 15:56:25 ",
        "2019-08-15 15:56:25+08:00",
        "２０１９-08-15 15:56:25",
        "0001-01-01 00:00:00",
        "0000-01-01 00:00:00",
    ],
)
def test_parse_notify_time_refuses(value: str) -> None:
    with pytest.raises(VerificationError) as info:
        parse_notify_time(value)
    assert info.value.code == "malformed"


# --- encryption ---


def _encrypted(key: bytes = AES_KEY, **extra: str) -> dict[str, str]:
    return _signed(BASE | {"encrypt_type": "AES", "biz_content": aes_encrypt(key, BIZ)} | extra)


def test_encrypted_biz_content_is_decrypted_after_verification() -> None:
    fields = _encrypted()
    result = verify_notification(_form(fields), _policy(encrypt_key=AES_KEY), NOW)
    assert result.encrypted is True
    assert result.biz_content == BIZ
    assert result.fields["biz_content"] == fields["biz_content"]  # still the ciphertext


def test_encrypted_gbk_notification() -> None:
    fields = oracle_sign(
        BASE
        | {
            "charset": "GBK",
            "encrypt_type": "AES",
            "biz_content": aes_encrypt(AES_KEY, BIZ, "gbk"),
        },
        _key(0),
        charset="gbk",
    )
    result = verify_notification(_form(fields, "gbk"), _policy(encrypt_key=AES_KEY), NOW)
    assert result.biz_content == BIZ


def test_require_encryption_accepts_encrypted() -> None:
    policy = _policy(encrypt_key=AES_KEY, require_encryption=True)
    assert verify_notification(_form(_encrypted()), policy, NOW).encrypted


ENCRYPTION_FAILURES: dict[str, tuple[Callable[[], dict[str, str]], VerificationPolicy, str]] = {
    "no-key-configured": (_encrypted, _policy(), "decrypt_failed"),
    "wrong-key": (_encrypted, _policy(encrypt_key=bytes(16)), "decrypt_failed"),
    "aes-v2": (
        lambda: _encrypted(encrypt_type="AES_V2"),
        _policy(encrypt_key=AES_KEY),
        "decrypt_failed",
    ),
    "lower-case-aes": (
        lambda: _encrypted(encrypt_type="aes"),
        _policy(encrypt_key=AES_KEY),
        "decrypt_failed",
    ),
    "rsa": (lambda: _encrypted(encrypt_type="RSA"), _policy(encrypt_key=AES_KEY), "decrypt_failed"),
    "no-biz-content": (
        lambda: _signed(BASE | {"encrypt_type": "AES"}),
        _policy(encrypt_key=AES_KEY),
        "decrypt_failed",
    ),
    "garbage-ciphertext": (
        lambda: _signed(BASE | {"encrypt_type": "AES", "biz_content": "not base64"}),
        _policy(encrypt_key=AES_KEY),
        "decrypt_failed",
    ),
    "plain-but-required": (
        _signed,
        _policy(encrypt_key=AES_KEY, require_encryption=True),
        "encryption_required",
    ),
    "blank-encrypt-type-but-required": (
        lambda: _signed(BASE | {"encrypt_type": " "}),
        _policy(encrypt_key=AES_KEY, require_encryption=True),
        "encryption_required",
    ),
    "tampered-ciphertext": (
        lambda: _encrypted() | {"biz_content": aes_encrypt(AES_KEY, BIZ + " ")},
        _policy(encrypt_key=AES_KEY),
        "bad_signature",
    ),
}


@pytest.mark.parametrize("case", list(ENCRYPTION_FAILURES))
def test_encryption_failures(case: str) -> None:
    build, policy, code = ENCRYPTION_FAILURES[case]
    assert _refused(_form(build()), policy) == code


def test_decryption_failure_does_not_leak_content() -> None:
    with pytest.raises(VerificationError) as info:
        verify_notification(_form(_encrypted()), _policy(encrypt_key=bytes(16)), NOW)
    assert "订阅" not in str(info.value)


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"encrypt_key": bytes(15)}, id="short-aes-key"),
        pytest.param({"require_encryption": True}, id="required-without-key"),
    ],
)
def test_policy_refuses_unusable_configuration(overrides: dict[str, object]) -> None:
    with pytest.raises(KeyMaterialError):
        _policy(**overrides)


def test_policy_repr_hides_key_material() -> None:
    assert repr(AES_KEY) not in repr(_policy(encrypt_key=AES_KEY))


# --- property: single-byte mutations ---

SIGNED_BODY = form_body(_signed())
SIGNED_FORM = parse_form(SIGNED_BODY)
_VALUE_POSITIONS = [
    i
    for i in range(len(SIGNED_BODY))
    if SIGNED_BODY.rfind(b"=", 0, i + 1) > SIGNED_BODY.rfind(b"&", 0, i + 1)
    and SIGNED_BODY[i : i + 1] != b"="  # a position inside a value, not the separator itself
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(position=st.sampled_from(_VALUE_POSITIONS), byte=st.integers(0, 255))
def test_single_byte_mutation_of_a_value_is_never_accepted(position: int, byte: int) -> None:
    assume(SIGNED_BODY[position] != byte)
    body = SIGNED_BODY[:position] + bytes([byte]) + SIGNED_BODY[position + 1 :]
    try:
        result = verify_notification(parse_form(body), _policy(), NOW)
    except VerificationError:
        return
    # Only a different spelling of the same bytes may pass (e.g. "%2b" for "%2B", or the
    # base64 padding bits of `sign`): what was signed must be exactly what was received.
    mutated = parse_form(body)
    assert sign_content_bytes(mutated, result.rule) == sign_content_bytes(SIGNED_FORM, result.rule)
    assert base64.b64decode(mutated.fields["sign"]) == base64.b64decode(SIGNED_FORM.fields["sign"])


def test_parse_epoch_millis() -> None:
    assert parse_epoch_millis("0") == datetime(1970, 1, 1, tzinfo=UTC)
    assert parse_epoch_millis("1714536000123") == OCCURRED + timedelta(milliseconds=123)


@pytest.mark.parametrize("value", ["", " 1", "1e3", "-5", "12345678901234", "１２"])
def test_parse_epoch_millis_refuses(value: str) -> None:
    with pytest.raises(VerificationError) as info:
        parse_epoch_millis(value)
    assert info.value.code == "malformed"
