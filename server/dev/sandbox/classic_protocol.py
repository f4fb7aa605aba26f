"""The classic gateway's (``gateway.do``) answers as Alipay writes them, and what a request
must carry: shared by the sandbox and the tests' fake gateway (``tests/server/fake_alipay.py``).

Only shapes live here, never a signature: each side signs the node text with its own signer
(the sandbox with ``verify``, the fake with the official SDK), so the tests still check our
client against code that is not ours. An answer is
``{"<method with _>_response": NODE, ["alipay_cert_sn": SN,] "sign": SIG}`` and the signature
covers NODE's exact text, which is why the text is built once here and handed to the signer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

SEND_METHOD = "alipay.open.app.mini.templatemessage.send"
QUERY_METHOD = "alipay.open.app.messagetemplate.subscribe.query"
GATEWAY_PATH = "/gateway.do"
COMMON_PARAMS = ("app_id", "method", "format", "charset", "sign_type", "timestamp", "version")
REQUIRED_PARAMS = (*COMMON_PARAMS, "biz_content", "sign")
ERROR_NODE = "error_response"


def success_node(**fields: Any) -> dict[str, Any]:
    return {"code": "10000", "msg": "Success", **fields}


def transient_node() -> dict[str, Any]:
    """``20000``: the gateway's own "try again" answer."""
    return {
        "code": "20000",
        "msg": "Service Currently Unavailable",
        "sub_code": "isp.unknow-error",
        "sub_msg": "系统繁忙",
    }


def rejected_node(sub_code: str, sub_msg: str) -> dict[str, Any]:
    """``40004``: a definite business failure."""
    return {"code": "40004", "msg": "Business Failed", "sub_code": sub_code, "sub_msg": sub_msg}


def refusal_node(problem: str) -> dict[str, Any]:
    """A request whose signature (or form) the gateway refuses, answered as ``error_response``."""
    return {
        "code": "40002",
        "msg": "Invalid Arguments",
        "sub_code": "isv.invalid-signature",
        "sub_msg": problem,
    }


def unknown_method_node(method: str) -> dict[str, Any]:
    return {
        "code": "40002",
        "msg": "Invalid Arguments",
        "sub_code": "isv.invalid-method",
        "sub_msg": f"不存在的方法名: {method}"[:200],
    }


def missing_params(form: Mapping[str, str]) -> list[str]:
    return [name for name in REQUIRED_PARAMS if not form.get(name)]


def subscribe_relation(template_id: str, state: str, subscribe_type: str) -> dict[str, Any]:
    """One ``subscribe_relations`` item of a subscribe.query answer."""
    return {
        "template_id": template_id,
        "subscribe_type": subscribe_type,
        "subscribe_state": state,
        "keep_state": "0",
        "show": True,
    }


def query_node(relations: list[dict[str, Any]]) -> dict[str, Any]:
    return success_node(show_component=True, subscribe_relations=relations)


def node_text(node: Mapping[str, Any]) -> str:
    """The node as the gateway writes it: compact, UTF-8 characters kept."""
    return json.dumps(node, ensure_ascii=False, separators=(",", ":"))


def encrypted_node_text(ciphertext: str) -> str:
    """An encrypted node is the quoted base64 ciphertext; the signature covers the quotes."""
    return json.dumps(ciphertext)


def answer_text(name: str, text: str, signature: str | None, cert_sn: str | None = None) -> str:
    """The whole answer around ``text`` (the node as signed), ``sign`` last."""
    parts = [f"{json.dumps(name)}:{text}"]
    if cert_sn is not None:
        parts.append(f'"alipay_cert_sn":{json.dumps(cert_sn)}')
    if signature is not None:
        parts.append(f'"sign":{json.dumps(signature)}')
    return "{" + ",".join(parts) + "}"
