"""Alipay OpenAPI v3 answers and request rules as the platform states them: shared by the
sandbox and the tests' fake v3 gateway (``tests/server/fake_alipay_v3.py``).

Shapes only: the request check and the answer's signature stay with each side (the sandbox's
with ``verify``, the fake's with ``cryptography`` directly), so the tests keep an independent
check of our client. An error is a 4xx ``{code, message, links}``; every answer carries
``alipay-timestamp``, ``alipay-nonce`` and ``alipay-signature`` over
``timestamp \\n nonce \\n body \\n``.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

SCHEME = "ALIPAY-SHA256withRSA "
SIGN_SEPARATOR = ",sign="
LABEL_SEND_PATH = "/v3/alipay/open/public/message/label/send"
# How far a request's timestamp may be from the gateway's clock: not documented by the
# platform, so the sandbox and the fake agree on one value.
TOLERANCE = timedelta(minutes=5)
REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")
# The code the platform answers (HTTP 429) once an app has used its label sends of the week;
# ``server.platforms.alipay_v3`` reads it as THROTTLED.
CALL_LIMITED = "app-call-limited"


def error_document(code: str, message: str, links: object = None) -> str:
    document: dict[str, Any] = {"code": code, "message": message}
    if links is not None:
        document["links"] = links
    return json.dumps(document, ensure_ascii=False)


def split_authorization(header: str) -> tuple[str, str, dict[str, str]] | None:
    """(auth string verbatim, signature, its items), or None without the scheme or ``sign``.
    The signature is cut at the *last* ``,sign=``: base64 holds ``=`` but never ``,``."""
    if not header.startswith(SCHEME) or SIGN_SEPARATOR not in header:
        return None
    auth_string, signature = header[len(SCHEME) :].rsplit(SIGN_SEPARATOR, 1)
    items = dict(item.split("=", 1) for item in auth_string.split(",") if "=" in item)
    return auth_string, signature, items


def answer_headers(
    timestamp: str, nonce: str, signature: str, trace_id: str, alipay_sn: str | None = None
) -> dict[str, str]:
    headers = {
        "alipay-trace-id": trace_id,
        "alipay-timestamp": timestamp,
        "alipay-nonce": nonce,
        "alipay-signature": signature,
    }
    if alipay_sn is not None:
        headers["alipay-sn"] = alipay_sn
    return headers
