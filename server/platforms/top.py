"""The TOP (Taobao Open Platform) router client: one shared session, a timeout on every call.

Every answer is classified once, here (``CallResult`` as for the Alipay client):

    SUCCESS    a 200 with the method's node, no error code, and no business ``success=false``
    REJECTED   request or credential errors (25 signature, 26/27 session, 28/29 app key,
               11-13 permissions, 21-24, 30-34, 40-43, any ``isv.*`` sub_code), an HTTP 4xx
               without a TOP error body, or a business ``result.success=false`` (its
               ``state_code``/``error_code`` in ``sub_code``, its message in ``sub_msg``)
    TRANSIENT  timeouts, connection errors, HTTP 5xx, any ``isp.*`` sub_code, code 10
               (service unavailable) and 15 (remote service error) without an ``isv.*`` sub_code
    THROTTLED  call limits 4-8, ``isv.access-limited-*``, HTTP 429: defer, never a tight loop
    UNKNOWN    a 2xx (or 3xx) answer whose body we cannot read: it may have been acted on

Precedence: a call-limit code or sub_code first, then ``isp.*``, then ``isv.*``, then the code.
So the seeds' example error (code 50 "Remote service error" with ``isv.invalid-parameter``) is
REJECTED; code 50 is found in no public source (the mirrors say 15), so it is read like 15:
TRANSIENT unless its sub_code says otherwise.

A timeout is TRANSIENT but its outcome is in fact unknown: the platform may have acted. Whether
TOP deduplicates on a business id such as jym's ``message_id`` is not confirmed, so a channel
must send the same business id again on every retry of one message.

All params travel in the form body (the Node SDK's way; Java puts system params in the query):
the ``session`` token then never lands in a URL that proxies log. Nothing that is signed is ever
logged: only the method, the app's name, the outcome and the codes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from server.credentials import TopAppCredentials
from server.platforms.calls import (
    CallOutcome,
    CallResult,
    PlatformClient,
    log_call,
    post_form,
    text_or_none,
)
from verify.errors import MalformedPayload
from verify.top import TopResponse, top_request_params, top_response_node

logger = logging.getLogger(__name__)

JYM_APPPUSH_SEND = "taobao.jym.message.apppush.send"
WORKCORE_BATCH_SEND = "alibaba.ib.workcore.message.batchsendmsg"

THROTTLED_CODES = frozenset({"4", "5", "6", "7", "8"})
TRANSIENT_CODES = frozenset({"10", "15", "50"})
THROTTLED_SUB_CODE_PREFIX = "isv.access-limited"
BUSINESS_FAILURE = "business_failure"
_BUSINESS_CODES = ("state_code", "error_code", "code", "sub_code")
_BUSINESS_MESSAGES = ("extra_err_msg", "error_msg", "msg", "sub_msg")
_SUCCESS_FLAGS = ("success", "is_success")


class TopClient(PlatformClient):
    async def call(
        self, app: TopAppCredentials, method: str, business_params: Mapping[str, Any]
    ) -> CallResult:
        """One signed router call. ``business_params`` values follow ``top_param_value``:
        strings as is, numbers as decimal strings, mappings (``push_content_dto``,
        ``batch_message_d_t_o``...) as one compact JSON string; ``None`` or blank: left out.
        """
        params = top_request_params(
            method=method,
            app_key=app.app_key,
            secret=app.app_secret,
            sign_method=app.sign_method,
            now=self._clock(),
            business_params=business_params,
            session=app.session,
        )
        answer = await post_form(self._session, app.gateway_url, params, self._timeout)
        if isinstance(answer, CallResult):
            return log_call(logger, f"top call {method}", app.name, answer)
        status, text = answer
        return log_call(logger, f"top call {method}", app.name, classify(status, text, method))


def classify(status: int, text: str, method: str) -> CallResult:
    """The outcome of one answer (HTTP status and body text) to ``method``."""
    if status >= 500:
        return CallResult(CallOutcome.TRANSIENT, error=f"HTTP {status}")
    if status == 429:
        return CallResult(CallOutcome.THROTTLED, error=f"HTTP {status}")
    try:
        response = top_response_node(text, method)
    except MalformedPayload as error:
        return _unreadable(status, f"{error.code}: {error}")
    # TOP answers errors inside a 200 as far as every SDK knows; an error body under another
    # status (not confirmed either way) is classified the same.
    if response.is_error:
        return _classify_error(response)
    if not 200 <= status < 300:
        return _unreadable(status, f"HTTP {status} without a TOP error")
    return _classify_business(response)


def _unreadable(status: int, error: str) -> CallResult:
    if 400 <= status < 500:  # refused before the router ran the method
        return CallResult(CallOutcome.REJECTED, error=f"HTTP {status}: {error}")
    return CallResult(CallOutcome.UNKNOWN, error=error)


def _classify_error(response: TopResponse) -> CallResult:
    node = response.node
    code, sub_code = text_or_none(node.get("code")), text_or_none(node.get("sub_code"))
    sub = sub_code or ""
    if code in THROTTLED_CODES or sub.startswith(THROTTLED_SUB_CODE_PREFIX):
        outcome = CallOutcome.THROTTLED
    elif sub.startswith("isp."):
        outcome = CallOutcome.TRANSIENT
    elif sub.startswith("isv."):
        outcome = CallOutcome.REJECTED
    elif code in TRANSIENT_CODES:
        outcome = CallOutcome.TRANSIENT
    else:
        outcome = CallOutcome.REJECTED
    return CallResult(
        outcome,
        code=code,
        msg=text_or_none(node.get("msg")),
        sub_code=sub_code,
        sub_msg=text_or_none(node.get("sub_msg")),
        node=node,
    )


def _classify_business(response: TopResponse) -> CallResult:
    """The gateway ran the method; ``result.success`` (or ``is_success``) false is a failure.

    Only an explicit false fails: a missing ``result`` or flag is success (Java's reading of a
    gateway-level success). ``result.result`` (jym) and ``result.content`` (workcore) are also
    documented as booleans; whether they can be false while ``success`` is true is not
    confirmed, so they are left to the channel, which gets the whole node.
    """
    node = response.node
    result = node.get("result")
    if not isinstance(result, Mapping):
        return CallResult(CallOutcome.SUCCESS, node=node)
    flag = next((result[name] for name in _SUCCESS_FLAGS if name in result), None)
    if flag is False or (isinstance(flag, str) and flag.strip().lower() == "false"):
        return CallResult(
            CallOutcome.REJECTED,
            sub_code=_first(result, _BUSINESS_CODES),
            sub_msg=_first(result, _BUSINESS_MESSAGES),
            error=BUSINESS_FAILURE,
            node=node,
        )
    return CallResult(CallOutcome.SUCCESS, node=node)


def _first(result: Mapping[str, Any], names: tuple[str, ...]) -> str | None:
    return next(
        (text_or_none(result[name]) for name in names if result.get(name) is not None), None
    )
