"""The TOP router's (``POST /router/rest``) checks and answers as the platform orders them:
shared by the sandbox and the tests' fake router (``tests/server/fake_top.py``).

The codes below are what the router answers, in the order it checks: an unknown ``app_key``,
then the signature, the timestamp (GMT+8 ``yyyy-MM-dd HH:mm:ss`` within ``SKEW``), the API
version, the format and an object param that is not JSON. The signature itself is computed by
each side on its own (the fake with a reference signer written from the rules), never here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from verify.top import top_response_name

PATH = "/router/rest"
GMT8 = timezone(timedelta(hours=8))
SKEW = timedelta(minutes=10)
OBJECT_PARAMS = frozenset({"push_content_dto", "work_bench_context", "batch_message_d_t_o"})
UNKNOWN_APP_KEY = 29
BAD_SIGNATURE = 25
BAD_TIMESTAMP = 31
BAD_VERSION = 32
BAD_FORMAT = 23
BAD_OBJECT_PARAM = 41


def fresh(timestamp: str, now: datetime) -> bool:
    try:
        sent = datetime.strptime(timestamp, "%Y-%m-%d %H:%M:%S").replace(tzinfo=GMT8)
    except ValueError:
        return False
    return abs(sent - now) <= SKEW


def form_refusal(params: Mapping[str, str], now: datetime) -> int | None:
    """The checks after the signature's, in the router's order: the code, or None."""
    if not fresh(params.get("timestamp", ""), now):
        return BAD_TIMESTAMP
    if params.get("v") != "2.0":
        return BAD_VERSION
    if params.get("format") != "json":
        return BAD_FORMAT
    for name in sorted(OBJECT_PARAMS & set(params)):
        try:
            json.loads(params[name])
        except ValueError:
            return BAD_OBJECT_PARAM
    return None


def error_document(
    code: int, msg: str, request_id: str, sub_code: str | None = None, sub_msg: str | None = None
) -> dict[str, Any]:
    node: dict[str, Any] = {"code": code, "msg": msg, "request_id": request_id}
    if sub_code is not None:
        node["sub_code"] = sub_code
    if sub_msg is not None:
        node["sub_msg"] = sub_msg
    return {"error_response": node}


def success_document(
    params: Mapping[str, str], result: Mapping[str, Any], request_id: str
) -> dict[str, Any]:
    """The answer in the shape ``simplify`` asks for: the bare node, or wrapped in its name."""
    node = {"result": dict(result), "request_id": request_id}
    if params.get("simplify") == "true":
        return node
    return {top_response_name(params["method"]): node}
