"""TOP request signing and answer reading, pinned to the notes' known-answer vectors (A3)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from verify.errors import MalformedPayload, UnsupportedSignType
from verify.top import (
    top_param_value,
    top_request_params,
    top_response_name,
    top_response_node,
    top_sign,
)

SECRET = "test_secret_0123456789"
PUSH_CONTENT = {
    "push_redirect_url_dto": {
        "redirect_url": "https://example.com/a?b=1&c=中",
        "redirect_url_type": "h5",
    },
    "title": "标题",
    "content": "内容 with space",
}
PUSH_CONTENT_JSON = (
    '{"push_redirect_url_dto":{"redirect_url":"https://example.com/a?b=1&c=中",'
    '"redirect_url_type":"h5"},"title":"标题","content":"内容 with space"}'
)
KNOWN_ANSWERS = {
    "md5": "B26BFB818A36B3D541847554656381B1",
    "hmac": "64979B4BA76D21CE522B4556BD898893",
    "hmac-sha256": "07D03C75865B5464A8A6F92973DF30BF769C65AEB695293AE1D0C8F029297AB7",
}
# 2026-01-02 03:04:05 in Beijing.
VECTOR_NOW = datetime(2026, 1, 1, 19, 4, 5, tzinfo=UTC)
JYM = "taobao.jym.message.apppush.send"
WORKCORE = "alibaba.ib.workcore.message.batchsendmsg"


def vector_params(sign_method: str) -> dict[str, str]:
    return {
        "method": JYM,
        "app_key": "12345678",
        "timestamp": "2026-01-02 03:04:05",
        "format": "json",
        "v": "2.0",
        "sign_method": sign_method,
        "simplify": "true",
        "partner_id": "unit-test",
        "session": "sess-abc",
        "user_id": "2200000000001",
        "message_id": "msg-0001",
        "template_id": "1001",
        "push_content_dto": PUSH_CONTENT_JSON,
    }


@pytest.mark.parametrize(("sign_method", "expected"), KNOWN_ANSWERS.items())
def test_the_three_known_answer_signatures(sign_method: str, expected: str) -> None:
    assert top_sign(vector_params(sign_method), SECRET, sign_method) == expected


@pytest.mark.parametrize(("sign_method", "expected"), KNOWN_ANSWERS.items())
def test_request_params_from_typed_values_reproduce_the_known_answers(
    sign_method: str, expected: str
) -> None:
    params = top_request_params(
        method=JYM,
        app_key="12345678",
        secret=SECRET,
        sign_method=sign_method,
        now=VECTOR_NOW,
        business_params={
            "user_id": 2200000000001,
            "message_id": "msg-0001",
            "template_id": 1001,
            "push_content_dto": PUSH_CONTENT,
        },
        session="sess-abc",
        simplify=True,
        partner_id="unit-test",
    )

    assert params == {**vector_params(sign_method), "sign": expected}
    assert list(params)[-1] == "sign"


def test_sign_and_blank_values_are_left_out_of_the_signature() -> None:
    params = {
        **vector_params("md5"),
        "sign": "ANYTHING",
        "empty": "",
        "blank": " \t",
        "  ": "blank key",
    }

    assert top_sign(params, SECRET, "md5") == KNOWN_ANSWERS["md5"]


def test_keys_are_sorted_by_their_bytes_and_values_are_not_url_encoded() -> None:
    params = {"a_b": "x y", "aB": "&=", "A": "中"}
    text = "A中aB&=a_bx y"  # 'A' < 'B'(0x42) < '_'(0x5F) in byte order

    expected = hashlib.md5(f"s{text}s".encode(), usedforsecurity=False).hexdigest().upper()

    assert top_sign(params, "s", "md5") == expected


@pytest.mark.parametrize("sign_method", ["MD5", "HMAC-SHA256", "sha1", "", "hmac_sha256"])
def test_an_unknown_sign_method_is_refused_not_guessed(sign_method: str) -> None:
    with pytest.raises(UnsupportedSignType):
        top_sign(vector_params("md5"), SECRET, sign_method)


def test_blank_and_none_business_values_are_neither_sent_nor_signed() -> None:
    params = top_request_params(
        method=WORKCORE,
        app_key="1",
        secret=SECRET,
        sign_method="hmac-sha256",
        now=VECTOR_NOW,
        business_params={"kept": "v", "empty": "", "blank": "  ", "none": None, "no_list": []},
    )

    assert {"empty", "blank", "none", "no_list", "session", "simplify"} & set(params) == set()
    assert params["kept"] == "v"
    assert top_sign(params, SECRET, "hmac-sha256") == params["sign"]


def test_simplify_is_not_sent_unless_asked_for() -> None:
    params = top_request_params(
        method=JYM,
        app_key="1",
        secret=SECRET,
        sign_method="md5",
        now=VECTOR_NOW,
        business_params={},
    )

    assert (params["format"], params["v"], "simplify" in params) == ("json", "2.0", False)


@pytest.mark.parametrize("name", ["method", "sign", "timestamp", "app_key", "session", "v"])
def test_a_business_param_may_not_shadow_a_system_param(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        top_request_params(
            method=JYM,
            app_key="1",
            secret=SECRET,
            sign_method="md5",
            now=VECTOR_NOW,
            business_params={name: "x"},
        )


@pytest.fixture(params=["America/New_York", "UTC", "Pacific/Kiritimati"])
def host_zone(request: pytest.FixtureRequest) -> Iterator[str]:
    old = os.environ.get("TZ")
    os.environ["TZ"] = request.param
    time.tzset()
    yield request.param
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2026, 11, 23, 1, 2, 3, tzinfo=UTC), "2026-11-23 09:02:03"),
        (datetime(2026, 12, 31, 16, 0, 0, tzinfo=UTC), "2027-01-01 00:00:00"),
        (datetime(2026, 3, 8, 7, 30, tzinfo=timezone(timedelta(hours=-5))), "2026-03-08 20:30:00"),
    ],
)
def test_the_timestamp_is_beijing_time_whatever_the_host_zone(
    host_zone: str, now: datetime, expected: str
) -> None:
    params = top_request_params(
        method=JYM, app_key="1", secret=SECRET, sign_method="md5", now=now, business_params={}
    )

    assert params["timestamp"] == expected


def test_a_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        top_request_params(
            method=JYM,
            app_key="1",
            secret=SECRET,
            sign_method="md5",
            now=datetime(2026, 1, 1, 12, 0),
            business_params={},
        )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("as is", "as is"),
        (True, "true"),
        (False, "false"),
        (0, "0"),
        (1526984087476772, "1526984087476772"),
        (-3, "-3"),
        (Decimal("1.50"), "1.50"),
        (2.5, "2.5"),
        (1e20, "100000000000000000000"),
        (datetime(2026, 1, 1, 16, 0, tzinfo=UTC), "2026-01-02 00:00:00"),
        (PUSH_CONTENT, PUSH_CONTENT_JSON),
        ({"system_id": "1", "user_id": 1}, '{"system_id":"1","user_id":1}'),
        ({"json_data": '{"k":"值"}'}, '{"json_data":"{\\"k\\":\\"值\\"}"}'),
        (["a", "b", 3], "a,b,3"),
        ([{"a": 1}, {"b": [1, 2]}], '[{"a":1},{"b":[1,2]}]'),
        (None, None),
    ],
    ids=lambda value: type(value).__name__,
)
def test_business_values_are_serialised_as_the_gateway_expects(
    value: object, expected: str | None
) -> None:
    assert top_param_value(value) == expected


@pytest.mark.parametrize("value", [object(), b"bytes", {1, 2}])
def test_values_of_other_types_are_refused(value: object) -> None:
    with pytest.raises(TypeError):
        top_param_value(value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), Decimal("NaN")])
def test_non_finite_numbers_are_refused(value: object) -> None:
    with pytest.raises(ValueError):
        top_param_value(value)


def test_object_params_are_sent_as_the_exact_compact_json_that_is_signed() -> None:
    context = {"system_id": "iwork", "user_id": 7}
    batch = {"json_data": '{"名":"值"}', "receiver": '["1","2"]', "sender": 9}

    params = top_request_params(
        method=WORKCORE,
        app_key="1",
        secret=SECRET,
        sign_method="hmac",
        now=VECTOR_NOW,
        business_params={"work_bench_context": context, "batch_message_d_t_o": batch},
    )

    assert params["work_bench_context"] == '{"system_id":"iwork","user_id":7}'
    assert " " not in params["batch_message_d_t_o"] and "名" in params["batch_message_d_t_o"]
    assert json.loads(params["batch_message_d_t_o"]) == batch
    assert top_sign(params, SECRET, "hmac") == params["sign"]


@pytest.mark.parametrize(
    ("method", "name"),
    [
        (JYM, "jym_message_apppush_send_response"),
        (WORKCORE, "alibaba_ib_workcore_message_batchsendmsg_response"),
        ("taobao.item.get", "item_get_response"),
        ("tmall.taobao.x", "tmall_taobao_x_response"),
    ],
)
def test_the_response_name_drops_only_a_leading_taobao(method: str, name: str) -> None:
    assert top_response_name(method) == name


JYM_RESULT = {"result": {"result": True, "success": True, "state_code": "SUCCESS"}}
ERROR = {"code": 7, "msg": "App Call Limited", "sub_code": "accesscontrol.limited"}


@pytest.mark.parametrize(
    ("method", "document", "name", "node", "is_error", "simplified"),
    [
        (
            JYM,
            {"jym_message_apppush_send_response": {**JYM_RESULT, "request_id": "r"}},
            "jym_message_apppush_send_response",
            {**JYM_RESULT, "request_id": "r"},
            False,
            False,
        ),
        (
            WORKCORE,
            {"alibaba_ib_workcore_message_batchsendmsg_response": {"result": {"success": True}}},
            "alibaba_ib_workcore_message_batchsendmsg_response",
            {"result": {"success": True}},
            False,
            False,
        ),
        (JYM, JYM_RESULT, "jym_message_apppush_send_response", JYM_RESULT, False, True),
        (JYM, {"error_response": ERROR}, "error_response", ERROR, True, False),
        (
            JYM,
            {"taobao_jym_message_apppush_send_response": JYM_RESULT},
            "taobao_jym_message_apppush_send_response",
            JYM_RESULT,
            False,
            False,
        ),
        (JYM, ERROR, "jym_message_apppush_send_response", ERROR, True, True),
        (JYM, {"code": "0", **JYM_RESULT}, "jym_message_apppush_send_response", None, False, True),
        (JYM, {"sub_code": "isv.x"}, "jym_message_apppush_send_response", None, True, True),
    ],
    ids=[
        "wrapped",
        "wrapped-alibaba-prefix-kept",
        "simplified",
        "error",
        "another-response-root",
        "simplified-flat-error",
        "code-0-is-not-an-error",
        "sub-code-alone-is-an-error",
    ],
)
def test_the_node_is_found_in_every_known_shape(
    method: str,
    document: dict[str, Any],
    name: str,
    node: dict[str, Any] | None,
    is_error: bool,
    simplified: bool,
) -> None:
    response = top_response_node(json.dumps(document, ensure_ascii=False), method)

    assert (response.node_name, response.is_error, response.simplified) == (
        name,
        is_error,
        simplified,
    )
    assert response.node == (document if node is None else node)


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[1, 2]",
        '"text"',
        '{"error_response": "oops"}',
        '{"jym_message_apppush_send_response": [1]}',
    ],
)
def test_unreadable_answers_are_malformed(text: str) -> None:
    with pytest.raises(MalformedPayload):
        top_response_node(text, JYM)
