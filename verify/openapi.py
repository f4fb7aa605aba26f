"""Alipay OpenAPI (gateway.do) calls: sign the request, verify and open the response. Pure.

Request: common params plus ``biz_content`` (AES-encrypted first when the app has a key: encrypt,
then sign), signed over every param except ``sign`` (``sign_type`` included), Java rules.

Response: ``{"<method>_response": NODE, ["alipay_cert_sn": "..."], "sign": "..."}``. The signature
covers the *raw text* of NODE as sent (never a re-serialisation): for an encrypted answer, the
quoted ciphertext string including its quotes. So NODE is cut out of the text by scanning, not
by ``json.loads`` + ``json.dumps`` (checked on a real response).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from verify.aes import aes_decrypt, aes_encrypt
from verify.canonical import SignRule, sign_content
from verify.errors import MalformedPayload, SignatureMismatch
from verify.notification import BEIJING, TrustedKey
from verify.signing import SignType, decode_signature, sign, verify_decoded_signature


@dataclass(frozen=True, slots=True)
class RequestSigner:
    app_id: str
    private_key: RSAPrivateKey = field(repr=False)
    sign_type: SignType = SignType.RSA2
    charset: str = "utf-8"
    app_cert_sn: str | None = None
    alipay_root_cert_sn: str | None = None
    encrypt_key: bytes | None = field(default=None, repr=False)  # the AES key: never shown


def signed_request_params(
    signer: RequestSigner, method: str, biz_content: Mapping[str, Any], now: datetime
) -> dict[str, str]:
    """Every form param of one call, ``sign`` last; ``timestamp`` is Beijing time on any host."""
    content = json.dumps(biz_content, ensure_ascii=False, separators=(",", ":"))
    params = {
        "app_id": signer.app_id,
        "method": method,
        "format": "json",
        "charset": signer.charset,
        "sign_type": signer.sign_type.value,
        "timestamp": now.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S"),
        "version": "1.0",
    }
    if signer.app_cert_sn and signer.alipay_root_cert_sn:
        params["app_cert_sn"] = signer.app_cert_sn
        params["alipay_root_cert_sn"] = signer.alipay_root_cert_sn
    if signer.encrypt_key is not None:
        params["encrypt_type"] = "AES"
        content = aes_encrypt(signer.encrypt_key, content, signer.charset)
    params["biz_content"] = content
    to_sign = sign_content(params, SignRule.V2).encode(signer.charset)
    params["sign"] = sign(signer.private_key, to_sign, signer.sign_type)
    return params


@dataclass(frozen=True, slots=True)
class OpenApiResponse:
    node: Mapping[str, Any]  # the decoded (and decrypted) *_response object
    node_name: str  # "<method>_response" or "error_response"
    signed: bool  # a signature was present and verified
    alipay_cert_sn: str | None
    key_label: str | None


def response_node_name(method: str) -> str:
    return method.replace(".", "_") + "_response"


def open_response(
    text: str,
    method: str,
    keys: Sequence[TrustedKey],
    *,
    sign_type: SignType = SignType.RSA2,
    charset: str = "utf-8",
    encrypt_key: bytes | None = None,
) -> OpenApiResponse:
    """Verify the response's signature over the raw node text, then decrypt and decode it.

    An unsigned answer is returned with ``signed=False``: the caller must never treat it as
    success. A present signature that does not verify raises ``SignatureMismatch``.
    """
    try:
        document = json.loads(text)
    except ValueError:
        raise MalformedPayload("the response is not JSON") from None
    if not isinstance(document, dict):
        raise MalformedPayload("the response is not a JSON object")
    name = response_node_name(method)
    if name not in document:
        name = "error_response"
    raw = raw_node_text(text, name)
    signature = document.get("sign")
    label = _verify(raw, signature, keys, sign_type, charset) if signature else None
    node = _decode_node(raw, encrypt_key, charset)
    cert_sn = document.get("alipay_cert_sn")
    return OpenApiResponse(
        node=node,
        node_name=name,
        signed=label is not None,
        alipay_cert_sn=cert_sn if isinstance(cert_sn, str) else None,
        key_label=label,
    )


def _verify(
    raw: str, signature: object, keys: Sequence[TrustedKey], sign_type: SignType, charset: str
) -> str:
    if not isinstance(signature, str) or not keys:
        raise SignatureMismatch("the response signature cannot be checked")
    decoded = decode_signature(signature)
    data = raw.encode(charset)
    for trusted in keys:
        try:
            verify_decoded_signature(trusted.key, data, decoded, sign_type)
        except SignatureMismatch:
            continue
        return trusted.label
    raise SignatureMismatch("no trusted key verifies the response")


def _decode_node(raw: str, encrypt_key: bytes | None, charset: str) -> Mapping[str, Any]:
    value = json.loads(raw)
    if isinstance(value, str):  # an encrypted node: "<base64 ciphertext>"
        if encrypt_key is None:
            raise MalformedPayload("the response is encrypted and no AES key is configured")
        try:
            value = json.loads(aes_decrypt(encrypt_key, value, charset))
        except ValueError:
            raise MalformedPayload("the decrypted response node is not JSON") from None
    if not isinstance(value, dict):
        raise MalformedPayload("the response node is not an object")
    return value


def raw_node_text(text: str, name: str) -> str:
    """The exact text of the value of top-level key ``name`` (an object or a string)."""
    marker = json.dumps(name) + ":"
    start = text.find(marker)
    if start < 0:
        raise MalformedPayload(f"the response has no {name} node")
    index = start + len(marker)
    while index < len(text) and text[index] in " \t\r\n":
        index += 1
    end = _value_end(text, index)
    return text[index:end]


def _value_end(text: str, index: int) -> int:
    """Index just past the JSON object or string starting at ``index`` (quote and escape aware)."""
    if index >= len(text) or text[index] not in '{"':
        raise MalformedPayload("the response node is neither an object nor a string")
    depth, in_string, escaped = 0, False, False
    for position in range(index, len(text)):
        char = text[position]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
                if depth == 0:
                    return position + 1
        elif char == '"':
            in_string = True
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return position + 1
    raise MalformedPayload("the response node is truncated")
