"""Alipay v3 request signing and answer checking (known-answer content hashes).

Expected signatures are made here with ``cryptography`` over literal content strings, never with
``verify/``: PKCS#1 v1.5 is deterministic, so signatures are compared for equality.
"""

from __future__ import annotations

import base64
import hashlib
import re

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from tests.pki import rsa_key
from verify.alipay_v3 import (
    v3_auth_string,
    v3_authorization,
    v3_response_content,
    v3_sign_content,
    verify_v3_response,
)
from verify.errors import SignatureMismatch
from verify.notification import TrustedKey

APP_ID = "2021000000000001"
PATH = "/v3/alipay/open/public/message/label/send"
BODY = (
    '{"filter":{"template":"${a}","context":{"a":{"column_name":"label_id_list","op":"in",'
    '"values":["100509"]}}},"material":{"msg_type":"text","text":{"title":"t","content":"c"}}}'
)
AUTH = "app_id=2021000000000001,nonce=n-1,timestamp=1767225600000"
REQUEST_SHA256 = "3f5bcb612ec6c13f5b572e9383b2f8edd56411b65d2213ab759a3fde42740cf9"
REQUEST_WITH_TOKEN_SHA256 = "45e9b0f1e9a860d016f41d005447dc46e22788f3c569da2b2325f402a7382575"
RESPONSE_SHA256 = "8d35d5c24c38946bc4d3038fe2684d6ca91ed30b8cb8a50b70c372a2df4f0ef3"


def reference_sign(key: RSAPrivateKey, content: str) -> str:
    signature = key.sign(content.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode("ascii")


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


ALIPAY = [TrustedKey(label="alipay#0", key=rsa_key(1).public_key())]


def test_the_request_content_matches_the_known_answer_hashes() -> None:
    auth = v3_auth_string(APP_ID, "n-1", 1767225600000)

    assert auth == AUTH
    assert sha256(v3_sign_content(auth, "POST", PATH, BODY)) == REQUEST_SHA256
    assert sha256(v3_sign_content(auth, "POST", PATH, BODY, "tok-1")) == REQUEST_WITH_TOKEN_SHA256


def test_the_response_content_matches_the_known_answer_hash_with_its_trailing_newline() -> None:
    content = v3_response_content("1767225600123", "abc", "{}")

    assert content == "1767225600123\nabc\n{}\n"
    assert sha256(content) == RESPONSE_SHA256


@pytest.mark.parametrize(
    ("cert_sn", "expected"),
    [
        (None, "app_id=2021000000000001,nonce=n-1,timestamp=1767225600000"),
        ("abc123", "app_id=2021000000000001,app_cert_sn=abc123,nonce=n-1,timestamp=1767225600000"),
    ],
)
def test_the_auth_string_is_in_the_official_sdks_order(cert_sn: str | None, expected: str) -> None:
    assert v3_auth_string(APP_ID, "n-1", 1767225600000, cert_sn) == expected


@pytest.mark.parametrize(
    ("cert_sn", "token", "auth", "token_line"),
    [
        (None, None, AUTH, ""),
        (None, "tok-1", AUTH, "tok-1\n"),
        (
            "abc123",
            None,
            "app_id=2021000000000001,app_cert_sn=abc123,nonce=n-1,timestamp=1767225600000",
            "",
        ),
    ],
    ids=["plain", "app-auth-token", "certificate-mode"],
)
def test_the_authorization_header_is_the_scheme_auth_and_an_exact_signature(
    cert_sn: str | None, token: str | None, auth: str, token_line: str
) -> None:
    header = v3_authorization(
        APP_ID,
        rsa_key(2),
        "POST",
        PATH + "?foo=b+a%26r",
        BODY,
        nonce="n-1",
        timestamp_ms=1767225600000,
        app_cert_sn=cert_sn,
        app_auth_token=token,
    )

    match = re.fullmatch(r"ALIPAY-SHA256withRSA (.+),sign=([A-Za-z0-9+/=]+)", header)
    assert match is not None and match.group(1) == auth
    content = f"{auth}\nPOST\n{PATH}?foo=b+a%26r\n{BODY}\n{token_line}"
    assert match.group(2) == reference_sign(rsa_key(2), content)


def test_a_get_without_body_signs_an_empty_body_line() -> None:
    header = v3_authorization(APP_ID, rsa_key(2), "GET", PATH, "", "n-1", 1767225600000)

    assert header.endswith(",sign=" + reference_sign(rsa_key(2), f"{AUTH}\nGET\n{PATH}\n\n"))


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"nonce": "a,b"}, "nonce"),
        ({"nonce": ""}, "nonce"),
        ({"app_id": "x=y"}, "app_id"),
        ({"app_cert_sn": "a\nb"}, "app_cert_sn"),
        ({"method": "post"}, "upper-case"),
        ({"path_with_query": "https://openapi.alipay.com" + PATH}, "path"),
    ],
)
def test_ambiguous_inputs_are_refused(overrides: dict[str, str], fragment: str) -> None:
    arguments: dict[str, str] = {
        "app_id": APP_ID,
        "method": "POST",
        "path_with_query": PATH,
        "body": BODY,
        "nonce": "n-1",
        **overrides,
    }
    with pytest.raises(ValueError, match=fragment):
        v3_authorization(private_key=rsa_key(2), timestamp_ms=1, **arguments)


def signed_answer(body: str, key_index: int = 1, *, newline: bool = True) -> str:
    content = f"1767225600123\nabc\n{body}\n" if newline else f"1767225600123\nabc\n{body}"
    return reference_sign(rsa_key(key_index), content)


def test_a_correctly_signed_answer_names_the_key_that_verified_it() -> None:
    signature = signed_answer('{"msg_id":"1"}')

    label = verify_v3_response('{"msg_id":"1"}', "1767225600123", "abc", signature, ALIPAY)

    assert label == "alipay#0"


def test_during_a_rotation_any_trusted_key_verifies() -> None:
    keys = [TrustedKey("old", rsa_key(3).public_key()), *ALIPAY]

    assert verify_v3_response(b"{}", "1767225600123", "abc", signed_answer("{}"), keys) == (
        "alipay#0"
    )


@pytest.mark.parametrize(
    ("body", "timestamp", "nonce", "signature", "fragment"),
    [
        ("{}", "1767225600123", "abc", signed_answer("{}", newline=False), "verifies"),
        ('{"x":1}', "1767225600123", "abc", signed_answer("{}"), "verifies"),
        ("{}", "1767225600124", "abc", signed_answer("{}"), "verifies"),
        ("{}", "1767225600123", "abd", signed_answer("{}"), "verifies"),
        ("{}", "1767225600123", "abc", signed_answer("{}", key_index=3), "verifies"),
        ("{} ", "1767225600123", "abc", signed_answer("{}"), "verifies"),
        ("{}", "1767225600123", "abc", "not base64!", "base64"),
        ("{}", None, "abc", signed_answer("{}"), "not signed"),
        ("{}", "1767225600123", "", signed_answer("{}"), "not signed"),
        ("{}", "1767225600123", "abc", None, "not signed"),
    ],
    ids=[
        "no-trailing-newline",
        "tampered-body",
        "tampered-timestamp",
        "tampered-nonce",
        "untrusted-key",
        "trailing-space",
        "bad-base64",
        "no-timestamp",
        "no-nonce",
        "no-signature",
    ],
)
def test_unsigned_or_badly_signed_answers_are_refused(
    body: str, timestamp: str | None, nonce: str | None, signature: str | None, fragment: str
) -> None:
    with pytest.raises(SignatureMismatch, match=fragment):
        verify_v3_response(body, timestamp, nonce, signature, ALIPAY)


def test_no_trusted_key_refuses_even_a_well_formed_answer() -> None:
    with pytest.raises(SignatureMismatch):
        verify_v3_response("{}", "1767225600123", "abc", signed_answer("{}"), [])


@pytest.mark.parametrize(
    ("alipay_sn", "expected_sn", "accepted"),
    [
        ("sn-1", "sn-1", True),
        ("sn-2", ["sn-1", "sn-2"], True),
        (None, "sn-1", True),  # whether Alipay always sends alipay-sn is not confirmed
        ("sn-other", "sn-1", False),
        ("sn-other", ["sn-1", "sn-2"], False),
        ("sn-other", None, True),  # public-key mode: no certificate to compare with
    ],
)
def test_in_certificate_mode_alipay_sn_must_name_a_configured_certificate(
    alipay_sn: str | None, expected_sn: str | list[str] | None, accepted: bool
) -> None:
    def check() -> str:
        return verify_v3_response(
            "{}",
            "1767225600123",
            "abc",
            signed_answer("{}"),
            ALIPAY,
            alipay_sn=alipay_sn,
            expected_sn=expected_sn,
        )

    if accepted:
        assert check() == "alipay#0"
    else:
        with pytest.raises(SignatureMismatch, match="alipay-sn"):
            check()
