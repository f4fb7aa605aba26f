"""Load RSA keys in the shapes the Alipay console and SDKs hand them out.

The console shows keys as bare base64 DER (public: SubjectPublicKeyInfo; private: PKCS#8 for Java,
PKCS#1 for the official Python SDK), often wrapped over several lines. PEM of either form is also
accepted. Error messages say which form was expected and never echo the input.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from verify.errors import KeyMaterialError

__all__ = [
    "MIN_RSA_BITS",
    "key_fingerprint",
    "load_private_key",
    "load_public_key",
    "public_key_base64",
    "require_rsa_public_key",
]

MIN_RSA_BITS = 1024

_PUBLIC_FORMS = "an RSA public key as bare base64 DER SubjectPublicKeyInfo or PEM"
_PRIVATE_FORMS = "an unencrypted RSA private key as bare base64 PKCS#8/PKCS#1 DER or PEM"
_LOAD_ERRORS = (ValueError, TypeError, UnsupportedAlgorithm)


def load_public_key(text: str | bytes) -> RSAPublicKey:
    """Bare base64 DER SPKI (whitespace tolerated), PEM ``PUBLIC KEY`` or ``RSA PUBLIC KEY``."""
    data = _as_bytes(text, _PUBLIC_FORMS)
    is_pem = data.startswith(b"-----BEGIN")
    der = b"" if is_pem else _bare_base64(data, _PUBLIC_FORMS)
    try:
        if is_pem:
            key: object = serialization.load_pem_public_key(data)
        else:
            key = serialization.load_der_public_key(der)
    except _LOAD_ERRORS:
        raise KeyMaterialError(f"expected {_PUBLIC_FORMS}") from None
    return require_rsa_public_key(key)


def load_private_key(text: str | bytes) -> RSAPrivateKey:
    """Bare base64 PKCS#8 or PKCS#1 DER, or PEM of either (unencrypted)."""
    data = _as_bytes(text, _PRIVATE_FORMS)
    is_pem = data.startswith(b"-----BEGIN")
    der = b"" if is_pem else _bare_base64(data, _PRIVATE_FORMS)
    try:
        if is_pem:
            key: object = serialization.load_pem_private_key(data, password=None)
        else:
            key = serialization.load_der_private_key(der, password=None)
    except _LOAD_ERRORS:
        raise KeyMaterialError(f"expected {_PRIVATE_FORMS}") from None
    if not isinstance(key, RSAPrivateKey):
        raise KeyMaterialError(f"expected {_PRIVATE_FORMS}; got a non-RSA key")
    _require_size(key.key_size)
    return key


def require_rsa_public_key(key: object) -> RSAPublicKey:
    """Narrow a loaded key to a usable RSA public key (shared with certificate loading)."""
    if not isinstance(key, RSAPublicKey):
        raise KeyMaterialError(f"expected {_PUBLIC_FORMS}; got a non-RSA key")
    _require_size(key.key_size)
    return key


def public_key_base64(key: RSAPublicKey) -> str:
    """Bare base64 DER SPKI on one line, as the Alipay console expects it."""
    return base64.b64encode(_spki_der(key)).decode("ascii")


def key_fingerprint(key: RSAPublicKey) -> str:
    """A short, log-safe identifier: ``sha256:`` + 16 hex digits of the SPKI DER digest."""
    return "sha256:" + hashlib.sha256(_spki_der(key)).hexdigest()[:16]


def _spki_der(key: RSAPublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _as_bytes(text: str | bytes, expected: str) -> bytes:
    if isinstance(text, str):
        if not text.isascii():
            raise KeyMaterialError(f"expected {expected}; input is not ASCII")
        text = text.encode("ascii")
    return text.strip()


def _bare_base64(data: bytes, expected: str) -> bytes:
    compact = b"".join(data.split())  # the console wraps long keys; any whitespace is layout
    if not compact:
        raise KeyMaterialError(f"expected {expected}; input is empty")
    try:
        return base64.b64decode(compact, validate=True)
    except binascii.Error:
        raise KeyMaterialError(f"expected {expected}; input is not base64") from None


def _require_size(bits: int) -> None:
    if bits < MIN_RSA_BITS:
        raise KeyMaterialError(f"RSA key has {bits} bits; at least {MIN_RSA_BITS} are required")
