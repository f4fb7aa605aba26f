"""An independent signer/verifier built on the official SDK (``alipay-sdk-python``).

Never imports ``verify``: tests compare our implementation against this one. SDK quirks handled
here: ``get_sign_content`` drops nothing by itself, so the Java rules (drop
``sign``, ``sign_type`` for V1, and empty/whitespace-only values) are applied first;
``verify_with_rsa`` needs bytes, raises on mismatch and accepts SHA-1 and SHA-256 alike (callers
pin the type themselves).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from urllib.parse import quote_plus

from alipay.aop.api.util import SignatureUtils
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

__all__ = ["form_body", "oracle_content", "oracle_sign", "oracle_verify"]

_SIGNERS = {"RSA2": SignatureUtils.sign_with_rsa2, "RSA": SignatureUtils.sign_with_rsa}


def oracle_content(fields: Mapping[str, str], *, rule: str = "V1") -> str:
    """The sign content Java builds: drop sign (+ sign_type for V1) and blank values, sort, join."""
    dropped = {"sign", "sign_type"} if rule == "V1" else {"sign"}
    kept = {k: v for k, v in fields.items() if k not in dropped and v.strip() != ""}
    content: str = SignatureUtils.get_sign_content(kept)
    return content


def oracle_sign(
    fields: Mapping[str, str],
    key: RSAPrivateKey,
    *,
    sign_type: str = "RSA2",
    rule: str = "V1",
    charset: str = "utf-8",
) -> dict[str, str]:
    """A copy of ``fields`` plus ``sign_type`` and ``sign``, signed by the official SDK."""
    if rule not in ("V1", "V2"):
        raise ValueError(f"unknown rule {rule!r}")
    signed = {k: v for k, v in fields.items() if k != "sign"}
    signed["sign_type"] = sign_type
    content = oracle_content(signed, rule=rule)
    signature: str = _SIGNERS[sign_type](_pkcs1_base64(key), content, charset)
    signed["sign"] = signature
    return signed


def oracle_verify(content: bytes, signature_b64: str, public_key: RSAPublicKey) -> bool:
    """True when the SDK accepts the signature (SHA-1 or SHA-256: it does not tell them apart)."""
    pem = public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")
    try:
        return bool(SignatureUtils.verify_with_rsa(pem, content, signature_b64))
    except Exception:  # rsa.pkcs1.VerificationError, or a malformed signature
        return False


def form_body(fields: Mapping[str, str], charset: str = "utf-8") -> bytes:
    """``k=v&...`` in the given order, each value ``quote_plus``-encoded in ``charset``."""
    pairs = (f"{quote_plus(k)}={quote_plus(v, encoding=charset)}" for k, v in fields.items())
    return "&".join(pairs).encode("ascii")


def _pkcs1_base64(key: RSAPrivateKey) -> str:
    # Duplicated from tests.pki on purpose: the oracle depends on nothing of ours.
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    return base64.b64encode(der).decode("ascii")
