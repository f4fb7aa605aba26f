"""The Alipay OpenAPI v3 client (``/v3/...`` JSON): one shared session, a timeout on every call.

Every answer's signature is checked (``alipay-timestamp``/``alipay-nonce``/``alipay-signature``
with the app's trusted Alipay keys, and ``alipay-sn`` against the configured certificates in
certificate mode), then it is classified once, here (``CallResult`` as for the classic client):

    SUCCESS    HTTP 2xx, signature verified; ``node`` is the decoded JSON body ({} if none)
    REJECTED   HTTP 4xx ``{code, message, links}``, signature verified: ``code``/``msg`` kept
    TRANSIENT  timeouts, connection errors, HTTP 5xx, ``SYSTEM_ERROR``, ``unknow-error``
    THROTTLED  HTTP 429, ``app-call-limited``, ``method-call-limited``: defer, never a tight loop
    UNKNOWN    an unsigned or badly signed answer (never success), or a 1xx/3xx status

The Node SDK checks signatures on answers below 400 only; whether Alipay signs its 4xx answers
is not confirmed. By default an unsigned 4xx is UNKNOWN (its code and message are still kept),
which is safe in both readings; ``accept_unsigned_errors=True`` classifies an unsigned 4xx by
its code instead (a *badly* signed answer is UNKNOWN either way). ``links`` in an error body is
a string in the Java models and a list of ``{link, desc}`` in the Node SDK: both are accepted
(``error_links``).

An app with an ``encrypt_key`` (接口内容加密 on) has every call with a body AES-encrypted: the
ciphertext is sent as ``text/plain`` with ``alipay-encrypt-type: AES`` and signed as sent, and a
2xx answer's body is verified as received, then decrypted; one that does not decrypt to JSON is
UNKNOWN, as an unverifiable answer is. Error answers are read as plain JSON, as the official Node
SDK reads them (``verify.alipay_v3``).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import aiohttp
from yarl import URL

from server.credentials import AppCredentials
from server.errors import AppNotReady
from server.platforms.calls import (
    CallOutcome,
    CallResult,
    PlatformClient,
    log_call,
    text_or_none,
)
from verify.aes import aes_encrypt
from verify.alipay_v3 import (
    V3_ENCRYPTION_HEADERS,
    v3_authorization,
    v3_decrypt_body,
    verify_v3_response,
)
from verify.errors import DecryptionFailed, SignatureMismatch

logger = logging.getLogger(__name__)

LABEL_SEND_PATH = "/v3/alipay/open/public/message/label/send"

THROTTLED_CODES = frozenset({"app-call-limited", "method-call-limited"})
TRANSIENT_CODES = frozenset({"SYSTEM_ERROR", "unknow-error", "unknown-error"})
_SIGNATURE_HEADERS = ("alipay-timestamp", "alipay-nonce", "alipay-signature")


def _new_id() -> str:
    return uuid.uuid4().hex


class AlipayV3Client(PlatformClient):
    def __init__(
        self,
        session: aiohttp.ClientSession,
        clock: Callable[[], datetime],
        timeout: float,
        *,
        new_id: Callable[[], str] = _new_id,
        accept_unsigned_errors: bool = False,
    ) -> None:
        super().__init__(session, clock, timeout)
        self._new_id = new_id
        self._accept_unsigned_errors = accept_unsigned_errors

    async def call(
        self,
        app: AppCredentials,
        method: str,
        path: str,
        body: Mapping[str, Any] | None,
        *,
        app_auth_token: str | None = None,
    ) -> CallResult:
        """One signed call of ``method`` (``"POST"``) on ``path`` (``/v3/...``, query included,
        already percent-encoded: it is sent and signed byte for byte) with ``body`` as JSON.

        Each call gets a fresh ``nonce`` and ``alipay-request-id`` (32 hex characters). With
        the app's ``encrypt_key`` the body goes encrypted and the answer comes back so.
        """
        if app.app_private_key is None:
            raise AppNotReady(f"app {app.app_id} has no app_private_key to sign calls with")
        if not path.startswith("/") or not path.isascii():
            raise ValueError("path must be an ASCII, percent-encoded path starting with /")
        key = None if body is None else app.policy.encrypt_key
        text = "" if body is None else json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        if key is not None:
            text = aes_encrypt(key, text)
        request_id = self._new_id()
        headers = self._headers(app, method, path, text, request_id, app_auth_token)
        if body is not None:
            headers["Content-Type"] = "application/json" if key is None else "text/plain"
        if key is not None:
            headers.update(V3_ENCRYPTION_HEADERS)
        url = URL(app.v3_gateway_url.rstrip("/") + path, encoded=True)
        data = text.encode("utf-8") if body is not None else None
        try:
            status, answer_headers, raw = await self._exchange(method, url, data, headers)
        except TimeoutError:
            result = CallResult(CallOutcome.TRANSIENT, error="timeout")
            return _logged(method, path, app, request_id, None, result)
        except aiohttp.ClientError as error:
            result = CallResult(CallOutcome.TRANSIENT, error=type(error).__name__)
            return _logged(method, path, app, request_id, None, result)
        result = self.classify(status, answer_headers, raw, app, encrypted=key is not None)
        trace_id = answer_headers.get("alipay-trace-id")
        return _logged(method, path, app, request_id, trace_id, result)

    def _headers(
        self,
        app: AppCredentials,
        method: str,
        path: str,
        text: str,
        request_id: str,
        app_auth_token: str | None,
    ) -> dict[str, str]:
        """The signed ``Authorization`` and the headers that go with it (certificate mode when
        the app has both serial numbers)."""
        assert app.app_private_key is not None
        cert_mode = bool(app.app_cert_sn and app.alipay_root_cert_sn)
        headers = {
            "Authorization": v3_authorization(
                app.app_id,
                app.app_private_key,
                method,
                path,
                text,
                nonce=self._new_id(),
                timestamp_ms=int(self._clock().timestamp() * 1000),
                app_cert_sn=app.app_cert_sn if cert_mode else None,
                app_auth_token=app_auth_token,
            ),
            "alipay-request-id": request_id,
            "Accept": "application/json",
        }
        if cert_mode and app.alipay_root_cert_sn:
            headers["alipay-root-cert-sn"] = app.alipay_root_cert_sn
        if app_auth_token:
            headers["alipay-app-auth-token"] = app_auth_token
        return headers

    async def _exchange(
        self, method: str, url: URL, data: bytes | None, headers: Mapping[str, str]
    ) -> tuple[int, Mapping[str, str], bytes]:
        """One HTTP request: its status, headers and raw body (which the signature covers)."""
        async with self._session.request(
            method,
            url,
            data=data,
            headers=headers,
            timeout=self._timeout,
            allow_redirects=False,
        ) as response:
            return response.status, response.headers, await response.read()

    def classify(
        self,
        status: int,
        headers: Mapping[str, str],
        raw: bytes,
        app: AppCredentials,
        *,
        encrypted: bool = False,
    ) -> CallResult:
        """The outcome of one answer: status, headers (lower-case names, or case-insensitive)
        and the raw body bytes, which the signature covers exactly; ``encrypted``: the request
        was, so a 2xx body is the app's ciphertext."""
        node = _decode(raw)
        code, message = text_or_none(node.get("code")), text_or_none(node.get("message"))
        if status >= 500:
            return CallResult(
                CallOutcome.TRANSIENT, code=code, msg=message, error=f"HTTP {status}", node=node
            )
        signed = all(headers.get(name) for name in _SIGNATURE_HEADERS)
        error = None
        try:
            verify_v3_response(
                raw,
                headers.get("alipay-timestamp"),
                headers.get("alipay-nonce"),
                headers.get("alipay-signature"),
                app.policy.keys,
                alipay_sn=headers.get("alipay-sn"),
                expected_sn=app.alipay_cert_sns or None,
            )
        except SignatureMismatch as mismatch:
            error = f"{mismatch.code}: {mismatch}"
        unsigned_error_ok = not signed and 400 <= status < 500 and self._accept_unsigned_errors
        if error is not None and not unsigned_error_ok:
            return CallResult(CallOutcome.UNKNOWN, code=code, msg=message, error=error, node=node)
        if 200 <= status < 300:
            return _success(raw, app, encrypted)
        if not 400 <= status < 500:
            return CallResult(
                CallOutcome.UNKNOWN, code=code, msg=message, error=f"HTTP {status}", node=node
            )
        if status == 429 or code in THROTTLED_CODES:
            outcome = CallOutcome.THROTTLED
        elif code in TRANSIENT_CODES:
            outcome = CallOutcome.TRANSIENT
        else:
            outcome = CallOutcome.REJECTED
        return CallResult(outcome, code=code, msg=message, error=error, node=node)


def _success(raw: bytes, app: AppCredentials, encrypted: bool) -> CallResult:
    """A verified 2xx: its body as JSON, decrypted first when it is ciphertext."""
    key = app.policy.encrypt_key
    if not encrypted or key is None or not raw.strip():
        return CallResult(CallOutcome.SUCCESS, node=_decode(raw))
    try:
        node = json.loads(v3_decrypt_body(key, raw.strip()))
    except DecryptionFailed as failure:
        return CallResult(CallOutcome.UNKNOWN, error=f"{failure.code}: {failure}")
    except ValueError:
        node = None
    if not isinstance(node, dict):
        error = f"{DecryptionFailed.code}: the decrypted answer is not a JSON object"
        return CallResult(CallOutcome.UNKNOWN, error=error)
    return CallResult(CallOutcome.SUCCESS, node=node)


def error_links(node: Mapping[str, Any]) -> tuple[str, ...]:
    """The ``links`` of an error body as URLs: a string, a list of strings or of ``{link}``."""
    links = node.get("links")
    if isinstance(links, str):
        return (links,) if links.strip() else ()
    if not isinstance(links, list):
        return ()
    found = [item.get("link") if isinstance(item, Mapping) else item for item in links]
    return tuple(link for link in found if isinstance(link, str) and link.strip())


def _decode(raw: bytes) -> Mapping[str, Any]:
    try:
        value = json.loads(raw.decode("utf-8")) if raw.strip() else {}
    except ValueError:  # UnicodeDecodeError is a ValueError too
        return {}
    return value if isinstance(value, dict) else {}


def _logged(
    method: str,
    path: str,
    app: AppCredentials,
    request_id: str,
    trace_id: str | None,
    result: CallResult,
) -> CallResult:
    context = f" request_id={request_id} trace_id={trace_id}"
    return log_call(
        logger, f"v3 call {method} {path.split('?', 1)[0]}", app.app_id, result, context
    )
