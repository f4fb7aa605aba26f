"""Alipay OpenAPI v3 (``/v3/...`` JSON over HTTP): sign a request, check an answer. Pure.

Request (the format the official Node SDK sends):

    Authorization: ALIPAY-SHA256withRSA <auth>,sign=<base64>
    auth    = app_id=<id>[,app_cert_sn=<sn>],nonce=<nonce>,timestamp=<epoch ms>
    content = auth \\n METHOD \\n path-with-query \\n body \\n [app_auth_token \\n]

signed RSA PKCS#1 v1.5 SHA-256 with the app private key. The URI is the request target exactly as
sent (no scheme or host), the body the exact text sent (``""`` when there is none).

Answer: ``alipay-signature`` over ``alipay-timestamp \\n alipay-nonce \\n body \\n``
with the Alipay public key; the trailing newline is required (the SDK rejects a signature made
without it). In certificate mode ``alipay-sn`` names the Alipay certificate that signed.

Content encryption (接口内容加密, as the official Node SDK's ``needEncrypt`` sends it): the
body is the JSON text AES-encrypted (``verify.aes``: CBC, zero IV, PKCS#7, base64) and sent as
``text/plain`` with ``V3_ENCRYPTION_HEADERS``; both signatures cover the body *as sent*, so the
request is signed over the ciphertext and a successful answer's ciphertext is verified first,
then decrypted (``v3_decrypt_body``). Error answers (4xx) stay plain JSON.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from verify.aes import aes_decrypt
from verify.errors import DecryptionFailed, SignatureMismatch
from verify.notification import TrustedKey
from verify.signing import SignType, decode_signature, sign, verify_decoded_signature

__all__ = [
    "V3_ENCRYPTION_HEADERS",
    "V3_SCHEME",
    "v3_auth_string",
    "v3_authorization",
    "v3_decrypt_body",
    "v3_response_content",
    "v3_sign_content",
    "verify_v3_response",
]

V3_SCHEME = "ALIPAY-SHA256withRSA"
V3_ENCRYPTION_HEADERS = {"alipay-encrypt-type": "AES", "alipay-encryption-algm": "AES"}
_FORBIDDEN = frozenset(",=\r\n")  # would make the auth string ambiguous


def v3_auth_string(
    app_id: str, nonce: str, timestamp_ms: int, app_cert_sn: str | None = None
) -> str:
    """``app_id=..[,app_cert_sn=..],nonce=..,timestamp=..``: the official SDKs' order.

    Third-party write-ups put ``timestamp`` before ``nonce``; whether the order matters to the
    gateway is not confirmed, so we use the order both official SDKs send, and a verifier must
    take the string verbatim from the header rather than rebuild it.
    """
    items = [("app_id", app_id)]
    if app_cert_sn:
        items.append(("app_cert_sn", app_cert_sn))
    items += [("nonce", nonce), ("timestamp", str(timestamp_ms))]
    for name, value in items:
        if not value or _FORBIDDEN & set(value):
            raise ValueError(f"{name} is empty or holds one of , = or a line break")
    return ",".join(f"{name}={value}" for name, value in items)


def v3_sign_content(
    auth_string: str,
    method: str,
    path_with_query: str,
    body: str,
    app_auth_token: str | None = None,
) -> str:
    """The exact text the request signature covers."""
    if method != method.upper() or not method.isalpha():
        raise ValueError("the HTTP method must be upper-case letters")
    if not path_with_query.startswith("/"):
        raise ValueError("the URI is the path (and query) only, starting with /")
    content = f"{auth_string}\n{method}\n{path_with_query}\n{body}\n"
    return content + (f"{app_auth_token}\n" if app_auth_token else "")


def v3_authorization(
    app_id: str,
    private_key: RSAPrivateKey,
    method: str,
    path_with_query: str,
    body: str,
    nonce: str,
    timestamp_ms: int,
    app_cert_sn: str | None = None,
    app_auth_token: str | None = None,
) -> str:
    """The ``Authorization`` header value. ``nonce`` and ``timestamp_ms`` come from the caller."""
    auth = v3_auth_string(app_id, nonce, timestamp_ms, app_cert_sn)
    content = v3_sign_content(auth, method, path_with_query, body, app_auth_token)
    signature = sign(private_key, content.encode("utf-8"), SignType.RSA2)
    return f"{V3_SCHEME} {auth},sign={signature}"


def v3_response_content(timestamp: str, nonce: str, body: str) -> str:
    """What ``alipay-signature`` covers, trailing newline included."""
    return f"{timestamp}\n{nonce}\n{body}\n"


def verify_v3_response(
    body_text: str | bytes,
    timestamp: str | None,
    nonce: str | None,
    signature: str | None,
    keys: Sequence[TrustedKey],
    alipay_sn: str | None = None,
    expected_sn: str | Collection[str] | None = None,
) -> str:
    """The label of the trusted key that verifies the answer; SignatureMismatch otherwise.

    ``body_text`` may be the raw bytes received (checked as is) or their UTF-8 text.
    A missing header raises too (the message says "not signed"): callers must never treat an
    unsigned answer as success. ``expected_sn`` (certificate mode: the configured Alipay
    certificate SN, or several during a rotation) refuses an answer whose ``alipay-sn`` names
    another certificate, as the Node SDK does. Whether Alipay always sends ``alipay-sn`` in
    certificate mode is not confirmed, so a missing one is accepted: the signature, checked
    against the configured (certificate) keys only, is what proves the origin.
    """
    if not (timestamp and nonce and signature):
        raise SignatureMismatch("the answer is not signed (alipay-timestamp/nonce/signature)")
    if expected_sn is not None and alipay_sn:
        allowed = {expected_sn} if isinstance(expected_sn, str) else set(expected_sn)
        if alipay_sn not in allowed:
            raise SignatureMismatch("alipay-sn names a certificate that is not configured")
    if not keys:
        raise SignatureMismatch("no trusted key to check the answer with")
    decoded = decode_signature(signature)
    body = body_text if isinstance(body_text, bytes) else body_text.encode("utf-8")
    data = f"{timestamp}\n{nonce}\n".encode() + body + b"\n"
    for trusted in keys:
        try:
            verify_decoded_signature(trusted.key, data, decoded, SignType.RSA2)
        except SignatureMismatch:
            continue
        return trusted.label
    raise SignatureMismatch("no trusted key verifies the answer")


def v3_decrypt_body(key: bytes, raw: bytes) -> str:
    """The JSON text of an encrypted answer's body (its base64 ciphertext, as received);
    ``DecryptionFailed`` when it is not ciphertext of UTF-8 text under ``key``."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise DecryptionFailed("the answer is not base64 ciphertext") from None
    return aes_decrypt(key, text)
