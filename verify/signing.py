"""RSA signatures as Alipay uses them: PKCS#1 v1.5, digest chosen by ``sign_type`` only.

``sign_type`` is matched exactly (``"RSA2"``/``"RSA"``), as the Java SDK compares it: a lower-case
``"rsa2"`` or ``"SM2"`` is refused rather than guessed. The digest is never inferred from the
signature (the official Python SDK does that, which lets a SHA-1 signature pass as RSA2).
"""

from __future__ import annotations

import base64
import binascii
import enum
from collections.abc import Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from verify.errors import SignatureMismatch, UnsupportedSignType
from verify.form import safe_echo

__all__ = [
    "SignType",
    "decode_signature",
    "parse_sign_type",
    "sign",
    "verify_decoded_signature",
    "verify_signature",
]


class SignType(enum.StrEnum):
    RSA2 = "RSA2"  # SHA256withRSA, PKCS#1 v1.5
    RSA = "RSA"  # SHA1withRSA (legacy)


_PADDING = padding.PKCS1v15()
_DIGESTS: Mapping[SignType, hashes.HashAlgorithm] = {
    SignType.RSA2: hashes.SHA256(),
    SignType.RSA: hashes.SHA1(),  # noqa: S303 - legacy Alipay RSA is SHA1withRSA by definition
}
_BY_VALUE: Mapping[str, SignType] = {member.value: member for member in SignType}


def parse_sign_type(value: str | None) -> SignType:
    """Exact, case-sensitive match; missing or anything else is UnsupportedSignType."""
    if value is None or not value.strip():
        raise UnsupportedSignType("sign_type is missing")
    sign_type = _BY_VALUE.get(value)
    if sign_type is None:
        raise UnsupportedSignType(f"sign_type {safe_echo(value)} is not supported")
    return sign_type


def sign(private_key: RSAPrivateKey, data: bytes, sign_type: SignType) -> str:
    """Base64 PKCS#1 v1.5 signature of ``data`` (deterministic)."""
    signature = private_key.sign(data, _PADDING, _DIGESTS[sign_type])
    return base64.b64encode(signature).decode("ascii")


def verify_signature(
    public_key: RSAPublicKey, data: bytes, signature_b64: str, sign_type: SignType
) -> None:
    """Return if the signature is valid; raise SignatureMismatch otherwise (also for bad base64)."""
    verify_decoded_signature(public_key, data, decode_signature(signature_b64), sign_type)


def decode_signature(signature_b64: str) -> bytes:
    """Strict base64 decoding, done once per notification however many keys are tried."""
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureMismatch("signature is not valid base64") from None
    if not signature:
        raise SignatureMismatch("signature is empty")
    return signature


def verify_decoded_signature(
    public_key: RSAPublicKey, data: bytes, signature: bytes, sign_type: SignType
) -> None:
    """Like verify_signature, for an already decoded signature."""
    if len(signature) != (public_key.key_size + 7) // 8:
        raise SignatureMismatch("signature length does not match the key size")
    try:
        public_key.verify(signature, data, _PADDING, _DIGESTS[sign_type])
    except InvalidSignature:
        raise SignatureMismatch("signature does not verify") from None
