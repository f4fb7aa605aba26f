from __future__ import annotations

import base64
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from tests.pki import rsa_key
from verify.errors import SignatureMismatch, UnsupportedSignType
from verify.signing import (
    SignType,
    decode_signature,
    parse_sign_type,
    sign,
    verify_decoded_signature,
    verify_signature,
)

DATA = "app_id=1&subject=中文".encode()


@pytest.mark.parametrize(("value", "expected"), [("RSA2", SignType.RSA2), ("RSA", SignType.RSA)])
def test_parse_sign_type(value: str, expected: SignType) -> None:
    assert parse_sign_type(value) is expected


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(None, id="missing"),
        pytest.param("", id="empty"),
        pytest.param("  ", id="blank"),
        pytest.param("rsa2", id="lower-case"),
        pytest.param("RSA2 ", id="trailing-space"),
        pytest.param("SM2", id="sm2"),
        pytest.param("RSA256", id="unknown"),
        pytest.param("ＲＳＡ２", id="full-width"),
    ],
)
def test_parse_sign_type_refuses(value: str | None) -> None:
    with pytest.raises(UnsupportedSignType) as info:
        parse_sign_type(value)
    assert info.value.code == "unsupported_sign_type"


@pytest.mark.parametrize(
    ("sign_type", "digest"),
    [(SignType.RSA2, hashes.SHA256()), (SignType.RSA, hashes.SHA1())],  # noqa: S303
    ids=str,
)
def test_sign_matches_independent_pkcs1v15(
    sign_type: SignType, digest: hashes.HashAlgorithm
) -> None:
    key = rsa_key(0)
    expected = base64.b64encode(key.sign(DATA, padding.PKCS1v15(), digest)).decode()
    assert sign(key, DATA, sign_type) == expected


@pytest.mark.parametrize("sign_type", list(SignType), ids=str)
def test_round_trip(sign_type: SignType) -> None:
    key = rsa_key(0)
    verify_signature(key.public_key(), DATA, sign(key, DATA, sign_type), sign_type)


@pytest.mark.parametrize(
    ("signed_as", "checked_as"),
    [(SignType.RSA, SignType.RSA2), (SignType.RSA2, SignType.RSA)],
    ids=["sha1-as-rsa2", "sha256-as-rsa"],
)
def test_digest_is_chosen_by_sign_type_only(signed_as: SignType, checked_as: SignType) -> None:
    key = rsa_key(0)
    with pytest.raises(SignatureMismatch):
        verify_signature(key.public_key(), DATA, sign(key, DATA, signed_as), checked_as)


def _good() -> str:
    return sign(rsa_key(0), DATA, SignType.RSA2)


def _flip_byte(signature_b64: str) -> str:
    raw = bytearray(base64.b64decode(signature_b64))
    raw[10] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


MUTATIONS: dict[str, Callable[[], str]] = {
    "flipped-byte": lambda: _flip_byte(_good()),
    "truncated-base64": lambda: _good()[:-4],
    "one-byte-short": lambda: base64.b64encode(base64.b64decode(_good())[:-1]).decode(),
    "one-byte-long": lambda: base64.b64encode(base64.b64decode(_good()) + b"\0").decode(),
    "not-base64": lambda: "!!!" + _good()[3:],
    "whitespace-inside": lambda: _good()[:20] + " " + _good()[20:],
    "empty": lambda: "",
    "non-ascii": lambda: "签名" + _good(),
    "other-key": lambda: sign(rsa_key(1), DATA, SignType.RSA2),
    "other-data": lambda: sign(rsa_key(0), DATA + b"x", SignType.RSA2),
}


@pytest.mark.parametrize("case", list(MUTATIONS))
def test_verify_refuses(case: str) -> None:
    signature = MUTATIONS[case]()
    with pytest.raises(SignatureMismatch) as info:
        verify_signature(rsa_key(0).public_key(), DATA, signature, SignType.RSA2)
    assert info.value.code == "bad_signature"
    if signature:
        assert signature not in str(info.value)


def test_wrong_key_size_is_a_mismatch_not_a_crash() -> None:
    signature = sign(rsa_key(0, bits=1024), DATA, SignType.RSA2)
    with pytest.raises(SignatureMismatch):
        verify_signature(rsa_key(0).public_key(), DATA, signature, SignType.RSA2)


def test_decode_then_verify_decoded() -> None:
    key = rsa_key(0)
    raw = decode_signature(sign(key, DATA, SignType.RSA2))
    assert len(raw) == 256
    verify_decoded_signature(key.public_key(), DATA, raw, SignType.RSA2)
