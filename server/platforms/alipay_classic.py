"""The Alipay OpenAPI client (classic gateway.do): one shared session, a timeout on every call.

Every answer is classified once, here:

    SUCCESS    code 10000 in a response whose signature verified
    REJECTED   a signed business failure (40004 etc.): definite, the sub_code is kept
    TRANSIENT  20000, isp.*, HTTP 5xx, timeouts, connection errors: worth retrying
    UNKNOWN    an unsigned or unverifiable answer: never success, never retried blindly
    THROTTLED  (TOP and v3 clients) a call-rate limit: defer until the window passes, never
               retry in a tight loop; nothing was done, so a later attempt is safe
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

from server.credentials import AppCredentials
from server.errors import AppNotReady
from server.platforms.calls import (
    CallOutcome,
    CallResult,
    PlatformClient,
    log_call,
    post_form,
    text_or_none,
)
from verify import SignType, VerificationError
from verify.openapi import OpenApiResponse, RequestSigner, open_response, signed_request_params

logger = logging.getLogger(__name__)

SUCCESS_CODE = "10000"
TRANSIENT_CODES = frozenset({"20000", "20001"})


class OpenApiCaller(Protocol):
    """Makes one classic-gateway call: ``AlipayClient`` in this process, or ``CallWorkers``."""

    async def call(
        self, app: AppCredentials, method: str, biz_content: Mapping[str, Any]
    ) -> CallResult: ...


class AlipayClient(PlatformClient):
    async def call(
        self, app: AppCredentials, method: str, biz_content: Mapping[str, Any]
    ) -> CallResult:
        try:
            signer = _signer(app)
        except AppNotReady as error:  # nothing was sent: a definite failure, not an unknown
            return log_call(
                logger,
                f"call {method}",
                app.app_id,
                CallResult(CallOutcome.REJECTED, error=str(error)),
            )
        params = signed_request_params(signer, method, biz_content, self._clock())
        answer = await post_form(self._session, app.gateway_url, params, self._timeout)
        if isinstance(answer, CallResult):
            return log_call(logger, f"call {method}", app.app_id, answer)
        status, text = answer
        if status >= 500:
            return log_call(
                logger,
                f"call {method}",
                app.app_id,
                CallResult(CallOutcome.TRANSIENT, error=f"HTTP {status}"),
            )
        return log_call(logger, f"call {method}", app.app_id, classify(text, method, app))


def classify(text: str, method: str, app: AppCredentials) -> CallResult:
    try:
        response = open_response(text, method, app.policy.keys, encrypt_key=app.policy.encrypt_key)
    except VerificationError as error:  # bad signature, malformed, or undecryptable
        return CallResult(CallOutcome.UNKNOWN, error=f"{error.code}: {error}")
    return _classify_node(response)


def _classify_node(response: OpenApiResponse) -> CallResult:
    node = response.node
    code, sub_code = text_or_none(node.get("code")), text_or_none(node.get("sub_code"))
    if not response.signed:
        outcome, error = CallOutcome.UNKNOWN, "the answer is not signed"
    elif code == SUCCESS_CODE:
        outcome, error = CallOutcome.SUCCESS, None
    elif code in TRANSIENT_CODES or (sub_code or "").startswith("isp."):
        outcome, error = CallOutcome.TRANSIENT, None
    else:
        outcome, error = CallOutcome.REJECTED, None
    return CallResult(
        outcome,
        code=code,
        msg=text_or_none(node.get("msg")),
        sub_code=sub_code,
        sub_msg=text_or_none(node.get("sub_msg")),
        error=error,
        node=node,
    )


def _signer(app: AppCredentials) -> RequestSigner:
    if app.app_private_key is None:
        raise AppNotReady(f"app {app.app_id} has no app_private_key to sign calls with")
    sign_type = SignType.RSA2 if SignType.RSA2 in app.policy.sign_types else SignType.RSA
    return RequestSigner(
        app_id=app.app_id,
        private_key=app.app_private_key,
        sign_type=sign_type,
        app_cert_sn=app.app_cert_sn,
        alipay_root_cert_sn=app.alipay_root_cert_sn,
        encrypt_key=app.policy.encrypt_key,
    )
