"""TOP (Taobao Open Platform) router calls: build and sign the form, find the answer's node. Pure.

Request: system params (``method``, ``app_key``, ``timestamp``, ``format``, ``v``,
``sign_method``, optional ``session``/``simplify``) plus business params, every value a string.
Object params travel as one compact JSON string in an ordinary form field, numbers as decimal
strings; that exact string is what is signed. Empty or blank values are neither sent nor signed
(the Java SDK's rule; the new Python SDK signs them, which the gateway would then see as a
mismatch against the form it cannot receive).

Signature (pinned by three known-answer vectors in tests/verify/test_top.py): every param except
``sign``, blank ones dropped, sorted by key bytes, concatenated ``k1v1k2v2...`` with the *decoded*
values, then ``md5`` = MD5(secret + S + secret), ``hmac`` = HMAC-MD5(secret, S) or ``hmac-sha256`` =
HMAC-SHA256(secret, S), upper-case hex. An unknown ``sign_method`` is refused, never guessed (Java
silently falls back to md5).

Response: ``{"<name>_response": NODE}`` (``<name>`` = the method without a leading
``taobao.``, dots as ``_``), the bare NODE with ``simplify=true``, or ``{"error_response": ...}``.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from verify.errors import MalformedPayload, UnsupportedSignType
from verify.form import safe_echo
from verify.notification import BEIJING

__all__ = [
    "SYSTEM_PARAMS",
    "TopResponse",
    "TopSignMethod",
    "parse_top_sign_method",
    "top_param_value",
    "top_request_params",
    "top_response_name",
    "top_response_node",
    "top_sign",
    "top_timestamp",
]

TOP_API_VERSION = "2.0"
ERROR_NODE = "error_response"
SYSTEM_PARAMS = frozenset(
    {
        "method",
        "app_key",
        "timestamp",
        "format",
        "v",
        "sign_method",
        "sign",
        "session",
        "simplify",
        "partner_id",
        "target_app_key",
    }
)


class TopSignMethod(enum.StrEnum):
    MD5 = "md5"  # MD5(secret + S + secret)
    HMAC = "hmac"  # HMAC-MD5
    HMAC_SHA256 = "hmac-sha256"


def parse_top_sign_method(value: str) -> TopSignMethod:
    """Exact, case-sensitive match, as the gateway compares it; anything else is refused."""
    try:
        return TopSignMethod(value)
    except ValueError:
        raise UnsupportedSignType(f"sign_method {safe_echo(value)} is not supported") from None


def top_sign(params: Mapping[str, str], secret: str, sign_method: str) -> str:
    """Upper-case hex signature of ``params`` (``sign`` and blank keys/values are left out)."""
    method = parse_top_sign_method(sign_method)
    text = _sign_text(params).encode("utf-8")
    key = secret.encode("utf-8")
    if method is TopSignMethod.MD5:
        digest = hashlib.md5(key + text + key, usedforsecurity=False).hexdigest()
    elif method is TopSignMethod.HMAC:
        digest = hmac.new(key, text, hashlib.md5).hexdigest()
    else:
        digest = hmac.new(key, text, hashlib.sha256).hexdigest()
    return digest.upper()


def _sign_text(params: Mapping[str, str]) -> str:
    kept = [(k, v) for k, v in params.items() if k != "sign" and _present(k) and _present(v)]
    kept.sort(key=lambda item: item[0].encode("utf-8"))
    return "".join(key + value for key, value in kept)


def _present(value: str) -> bool:
    return bool(value.strip())


def top_timestamp(now: datetime) -> str:
    """``yyyy-MM-dd HH:mm:ss`` in GMT+8 whatever the host's zone; a naive ``now`` is refused."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware (a naive time would be read as local time)")
    return now.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")


def top_param_value(value: object) -> str | None:
    """One business value as the gateway expects it; ``None`` means "leave the param out".

    str as is; bool ``true``/``false``; int/Decimal/float as a plain decimal string; an aware
    datetime as a Beijing timestamp; a mapping as compact JSON (``ensure_ascii=False``, no spaces,
    nested values serialised verbatim); a list of scalars comma-joined, a list holding any mapping
    or list as a JSON array. Anything else is a TypeError.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float | Decimal):
        return _decimal_text(value)
    if isinstance(value, datetime):
        return top_timestamp(value)
    if isinstance(value, Mapping):
        return _compact_json(value)
    if isinstance(value, list | tuple):
        if any(isinstance(item, Mapping | list | tuple) for item in value):
            return _compact_json(list(value))
        parts = [top_param_value(item) for item in value]
        return ",".join(part for part in parts if part is not None)
    raise TypeError(f"a TOP parameter cannot be a {type(value).__name__}")


def _decimal_text(value: float | Decimal) -> str:
    number = Decimal(repr(value)) if isinstance(value, float) else value
    if not number.is_finite():
        raise ValueError("a TOP number must be finite")
    return format(number, "f")


def _compact_json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def top_request_params(
    *,
    method: str,
    app_key: str,
    secret: str,
    sign_method: str,
    now: datetime,
    business_params: Mapping[str, Any],
    session: str | None = None,
    simplify: bool = False,
    partner_id: str | None = None,
) -> dict[str, str]:
    """Every form field of one call (system params, business params, ``sign`` last).

    ``simplify`` is left out unless asked for: the wrapped answer names the method it answers,
    which ``top_response_node`` checks; ``top_response_node`` reads both shapes regardless.
    A business param may not reuse a system param's name (it would change what is signed).
    """
    clash = sorted(set(business_params) & SYSTEM_PARAMS)
    if clash:
        raise ValueError(f"business params may not be named {', '.join(clash)}")
    params: dict[str, str] = {
        "method": method,
        "app_key": app_key,
        "timestamp": top_timestamp(now),
        "format": "json",
        "v": TOP_API_VERSION,
        "sign_method": parse_top_sign_method(sign_method).value,
    }
    optional = {
        "session": session,
        "simplify": "true" if simplify else None,
        "partner_id": partner_id,
    }
    for name, value in [*optional.items(), *business_params.items()]:
        text = top_param_value(value)
        if text is not None and _present(text):
            params[name] = text
    params["sign"] = top_sign(params, secret, sign_method)
    return params


def top_response_name(method: str) -> str:
    """``taobao.jym.message.apppush.send`` -> ``jym_message_apppush_send_response``."""
    return method.removeprefix("taobao.").replace(".", "_") + "_response"


@dataclass(frozen=True, slots=True)
class TopResponse:
    node: Mapping[str, Any]  # the answer's fields (the wrapper's value, or the root if simplified)
    node_name: str  # "<name>_response", another "*_response" root, or "error_response"
    is_error: bool  # an error_response, or a node whose code/sub_code say it failed
    simplified: bool  # no wrapper: the simplify=true shape


def top_response_node(text: str, method: str) -> TopResponse:
    """The node of a JSON answer, in any of the shapes the gateway is known to use.

    Order: ``error_response`` -> ``<name>_response`` -> a root with exactly one key, named
    ``*_response`` and holding an object (the Java SDK's reading: it takes the first value under
    the root; this covers a name rule that turns out different for these two undocumented APIs)
    -> otherwise the root itself (``simplify=true``). Whether a simplified *error* keeps its
    ``error_response`` wrapper is not confirmed (Java's converter expects it), so a node is also
    an error when it carries a non-zero ``code`` or any ``sub_code`` (Java's ``isSuccess`` rule).
    """
    try:
        document = json.loads(text)
    except ValueError:
        raise MalformedPayload("the TOP answer is not JSON") from None
    if not isinstance(document, dict):
        raise MalformedPayload("the TOP answer is not a JSON object")
    error = document.get(ERROR_NODE)
    if error is not None:
        return TopResponse(_object(error, ERROR_NODE), ERROR_NODE, True, simplified=False)
    name = top_response_name(method)
    if name not in document and len(document) == 1:
        (only,) = document
        if only.endswith("_response") and isinstance(document[only], dict):
            name = only
    if name in document:
        node = _object(document[name], name)
        return TopResponse(node, name, _failed(node), simplified=False)
    return TopResponse(document, name, _failed(document), simplified=True)


def _object(value: object, name: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise MalformedPayload(f"the TOP answer's {name} is not an object")
    return value


def _failed(node: Mapping[str, Any]) -> bool:
    code, sub_code = _text(node.get("code")), _text(node.get("sub_code"))
    return code not in {"", "0"} or sub_code != ""


def _text(value: object) -> str:
    return "" if value is None else str(value).strip()
