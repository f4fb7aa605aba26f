from __future__ import annotations

import base64
import hashlib
import re
import textwrap
from collections.abc import Callable

import pytest
import rsa as python_rsa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import rsa as crypto_rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from tests.pki import (
    pkcs1_base64,
    pkcs8_base64,
    private_pem_pkcs1,
    private_pem_pkcs8,
    public_pem,
    rsa_key,
    spki_base64,
)
from verify.errors import KeyMaterialError
from verify.keys import key_fingerprint, load_private_key, load_public_key, public_key_base64


def _pkcs1_public_pem(key: RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
        .decode()
    )


def _wrapped(text: str) -> str:
    return "\r\n  ".join(textwrap.wrap(text, 64)) + "\n"


def _small_rsa_private_key() -> RSAPrivateKey:
    """A 512-bit key: cryptography refuses to generate one, python-rsa does not."""
    _, small = python_rsa.newkeys(512)
    public = crypto_rsa.RSAPublicNumbers(small.e, small.n)
    return crypto_rsa.RSAPrivateNumbers(
        small.p, small.q, small.d, small.exp1, small.exp2, small.coef, public
    ).private_key(unsafe_skip_rsa_key_validation=True)


PUBLIC_FORMS: dict[str, Callable[[RSAPrivateKey], str | bytes]] = {
    "spki-base64": lambda k: spki_base64(k.public_key()),
    "spki-base64-wrapped": lambda k: _wrapped(spki_base64(k.public_key())),
    "spki-base64-bytes": lambda k: spki_base64(k.public_key()).encode(),
    "pem": lambda k: public_pem(k.public_key()),
    "pem-bytes-padded": lambda k: "\n  " + public_pem(k.public_key()) + "\n",
    "pkcs1-pem": _pkcs1_public_pem,
}

PRIVATE_FORMS: dict[str, Callable[[RSAPrivateKey], str | bytes]] = {
    "pkcs8-base64": pkcs8_base64,
    "pkcs1-base64": pkcs1_base64,
    "pkcs8-base64-wrapped": lambda k: _wrapped(pkcs8_base64(k)),
    "pkcs8-pem": private_pem_pkcs8,
    "pkcs1-pem": private_pem_pkcs1,
    "pkcs1-pem-bytes": lambda k: private_pem_pkcs1(k).encode(),
}


@pytest.mark.parametrize("form", list(PUBLIC_FORMS))
def test_load_public_key_forms(form: str) -> None:
    key = rsa_key(0)
    loaded = load_public_key(PUBLIC_FORMS[form](key))
    assert loaded.public_numbers() == key.public_key().public_numbers()


@pytest.mark.parametrize("form", list(PRIVATE_FORMS))
def test_load_private_key_forms(form: str) -> None:
    key = rsa_key(0)
    loaded = load_private_key(PRIVATE_FORMS[form](key))
    assert loaded.private_numbers() == key.private_numbers()


def test_load_public_key_1024_bits_is_enough() -> None:
    key = rsa_key(0, bits=1024)
    assert load_public_key(spki_base64(key.public_key())).key_size == 1024


def _ec_spki() -> str:
    der = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return base64.b64encode(der).decode()


def _ec_private_pem() -> str:
    return (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )


def _encrypted_pem() -> str:
    return (
        rsa_key(0)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret-pass"),
        )
        .decode()
    )


BAD_PUBLIC: dict[str, Callable[[], str | bytes]] = {
    "empty": lambda: "",
    "whitespace": lambda: " \n ",
    "not-base64": lambda: "MIIB!!notbase64",
    "base64-garbage": lambda: base64.b64encode(b"Zm9vYmFyZ2FyYmFnZQ" * 4).decode(),
    "truncated-der": lambda: spki_base64(rsa_key(0).public_key())[:200],
    "non-ascii": lambda: "密钥" + spki_base64(rsa_key(0).public_key()),
    "ec-key": _ec_spki,
    "small-rsa": lambda: spki_base64(_small_rsa_private_key().public_key()),
    "private-key-given": lambda: pkcs8_base64(rsa_key(0)),
    "pem-garbage": lambda: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    "invalid-utf8-bytes": lambda: b"\xff\xfe",
}


@pytest.mark.parametrize("case", list(BAD_PUBLIC))
def test_load_public_key_refuses(case: str) -> None:
    text = BAD_PUBLIC[case]()
    with pytest.raises(KeyMaterialError) as info:
        load_public_key(text)
    assert info.value.code == "invalid_key"
    _assert_not_echoed(text, str(info.value))


BAD_PRIVATE: dict[str, Callable[[], str | bytes]] = {
    "empty": lambda: "",
    "not-base64": lambda: "MIIE***",
    "public-key-given": lambda: spki_base64(rsa_key(0).public_key()),
    "truncated": lambda: pkcs8_base64(rsa_key(0))[:300],
    "ec-key": _ec_private_pem,
    "small-rsa": lambda: private_pem_pkcs8(_small_rsa_private_key()),
    "encrypted-pem": _encrypted_pem,
    "non-ascii": lambda: "私钥",
}


@pytest.mark.parametrize("case", list(BAD_PRIVATE))
def test_load_private_key_refuses(case: str) -> None:
    text = BAD_PRIVATE[case]()
    with pytest.raises(KeyMaterialError) as info:
        load_private_key(text)
    assert info.value.code == "invalid_key"
    _assert_not_echoed(text, str(info.value))


def _assert_not_echoed(text: str | bytes, message: str) -> None:
    as_text = text.decode("latin-1") if isinstance(text, bytes) else text
    for chunk in re.findall(r"[A-Za-z0-9+/]{6,}", as_text):
        assert chunk not in message
    assert "expected" in message or "bits" in message


def test_public_key_base64_round_trip_single_line() -> None:
    key = rsa_key(1).public_key()
    text = public_key_base64(key)
    assert text == spki_base64(key)
    assert "\n" not in text
    assert load_public_key(text).public_numbers() == key.public_numbers()


def test_key_fingerprint() -> None:
    key = rsa_key(0).public_key()
    der = base64.b64decode(spki_base64(key))
    fingerprint = key_fingerprint(key)
    assert re.fullmatch(r"sha256:[0-9a-f]{16}", fingerprint)
    assert fingerprint == "sha256:" + hashlib.sha256(der).hexdigest()[:16]
    assert fingerprint != key_fingerprint(rsa_key(1).public_key())
