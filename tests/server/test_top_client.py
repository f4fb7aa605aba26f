"""The TOP client against a fake router on loopback that checks every request independently."""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from server.credentials import TopAppCredentials, load_top_credentials
from server.platforms.calls import CallOutcome
from server.platforms.top import JYM_APPPUSH_SEND, WORKCORE_BATCH_SEND, TopClient
from server.settings import Settings, SettingsError, settings_from_mapping
from tests.pki import rsa_key, spki_base64
from tests.server import fake_top
from tests.server.fake_top import FakeTop, TopReply, reference_top_sign
from verify.top import TopSignMethod

NOW = datetime(2026, 11, 23, 8, 0, 0, tzinfo=UTC)  # 16:00 in Beijing
APP_KEY = "12345678"
SECRET = "top-secret-value-never-logged-0123"
SESSION = "top-session-token-never-logged-4567"
JYM_PARAMS: dict[str, Any] = {
    "user_id": 1526984087476772,
    "message_id": "idem-key-derived-0001",
    "template_id": 1,
    "push_content_dto": {
        "push_redirect_url_dto": {
            "redirect_url": "http://www.jiaoyimao.com",
            "redirect_url_type": 1,
        },
        "title": "标题",
        "content": "内容",
    },
}
WORKCORE_PARAMS: dict[str, Any] = {
    "work_bench_context": {"system_id": "1", "user_id": 1},
    "batch_message_d_t_o": {
        "json_data": '{"name":"值"}',
        "resource_url": "www.xxx.com",
        "event_type": "account_receiver",
        "action": "order_shipped",
        "receiver": '["1001","1002"]',
        "source": "iwork",
        "resource_id": "1",
        "sender": 1,
    },
}


class Clock:
    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def credentials(url: str, **overrides: Any) -> TopAppCredentials:
    fields: dict[str, Any] = {
        "name": "shop",
        "app_key": APP_KEY,
        "app_secret": SECRET,
        "sign_method": "hmac-sha256",
        "gateway_url": url,
        "session": None,
        **overrides,
    }
    return TopAppCredentials(**fields)


@pytest.fixture
async def gateway() -> AsyncIterator[FakeTop]:
    fake = FakeTop({APP_KEY: SECRET}, Clock())
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def client(http: aiohttp.ClientSession) -> TopClient:
    return TopClient(http, Clock(), timeout=5.0)


@pytest.mark.parametrize(
    ("sign_method", "expected"),
    [
        ("md5", "B26BFB818A36B3D541847554656381B1"),
        ("hmac", "64979B4BA76D21CE522B4556BD898893"),
        ("hmac-sha256", "07D03C75865B5464A8A6F92973DF30BF769C65AEB695293AE1D0C8F029297AB7"),
    ],
)
def test_the_fakes_reference_signer_reproduces_the_known_answers(
    sign_method: str, expected: str
) -> None:
    params = {
        "method": JYM_APPPUSH_SEND,
        "app_key": APP_KEY,
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
        "push_content_dto": (
            '{"push_redirect_url_dto":{"redirect_url":"https://example.com/a?b=1&c=中",'
            '"redirect_url_type":"h5"},"title":"标题","content":"内容 with space"}'
        ),
        "blank": " ",
    }

    assert reference_top_sign(params, "test_secret_0123456789", sign_method) == expected


@pytest.mark.parametrize("sign_method", ["md5", "hmac", "hmac-sha256"])
async def test_a_jym_push_is_signed_sent_and_succeeds(
    gateway: FakeTop, client: TopClient, sign_method: str
) -> None:
    app = credentials(gateway.url, sign_method=sign_method)

    result = await client.call(app, JYM_APPPUSH_SEND, JYM_PARAMS)

    assert (result.outcome, result.code, result.error) == (CallOutcome.SUCCESS, None, None)
    assert result.node["result"] == {"success": True}
    (request,) = gateway.received
    assert request.refused is None
    assert request.content_type.startswith("application/x-www-form-urlencoded")
    params = request.params
    assert (params["method"], params["app_key"], params["sign_method"]) == (
        JYM_APPPUSH_SEND,
        APP_KEY,
        sign_method,
    )
    assert (params["format"], params["v"], params["timestamp"]) == (
        "json",
        "2.0",
        "2026-11-23 16:00:00",
    )
    assert (params["user_id"], params["template_id"]) == ("1526984087476772", "1")
    assert params["message_id"] == "idem-key-derived-0001"
    assert params["push_content_dto"] == json.dumps(
        JYM_PARAMS["push_content_dto"], ensure_ascii=False, separators=(",", ":")
    )
    assert "simplify" not in params and "session" not in params
    assert request.query == {}  # everything in the form body


async def test_a_workcore_batch_is_sent_with_its_object_params_as_json(
    gateway: FakeTop, client: TopClient
) -> None:
    result = await client.call(credentials(gateway.url), WORKCORE_BATCH_SEND, WORKCORE_PARAMS)

    assert result.outcome is CallOutcome.SUCCESS
    (request,) = gateway.received
    assert json.loads(request.params["work_bench_context"]) == {"system_id": "1", "user_id": 1}
    sent = json.loads(request.params["batch_message_d_t_o"])
    assert sent == WORKCORE_PARAMS["batch_message_d_t_o"]


async def test_the_session_is_sent_and_signed_when_configured(
    gateway: FakeTop, client: TopClient
) -> None:
    result = await client.call(credentials(gateway.url, session=SESSION), JYM_APPPUSH_SEND, {})

    assert result.outcome is CallOutcome.SUCCESS
    assert gateway.received[0].params["session"] == SESSION


async def test_blank_business_values_are_not_sent(gateway: FakeTop, client: TopClient) -> None:
    params = {**JYM_PARAMS, "message_id": "", "extra": None, "note": "  "}

    await client.call(credentials(gateway.url), JYM_APPPUSH_SEND, params)

    assert {"message_id", "extra", "note"} & set(gateway.received[0].form) == set()


def remote_error(**fields: Any) -> TopReply:
    return TopReply(body=json.dumps({"error_response": fields}))


OUTCOMES = [
    # (id, reply, outcome, code, sub_code)
    (
        "15-isp-timeout",
        fake_top.error(15, "Remote service error", "isp.top-remote-connection-timeout"),
        CallOutcome.TRANSIENT,
        "15",
        "isp.top-remote-connection-timeout",
    ),
    ("15-bare", fake_top.error(15, "Remote service error"), CallOutcome.TRANSIENT, "15", None),
    (
        "10-unavailable",
        fake_top.error(10, "Service unavailable"),
        CallOutcome.TRANSIENT,
        "10",
        None,
    ),
    (
        "isp-under-other-code",
        fake_top.error(40, "x", "isp.remote-connection-error"),
        CallOutcome.TRANSIENT,
        "40",
        "isp.remote-connection-error",
    ),
    ("50-bare", fake_top.error(50, "Remote service error"), CallOutcome.TRANSIENT, "50", None),
    (
        "50-isv-seed-example",
        fake_top.error(50, "Remote service error", "isv.invalid-parameter", "非法参数"),
        CallOutcome.REJECTED,
        "50",
        "isv.invalid-parameter",
    ),
    ("7-call-limited", fake_top.error(7, "App Call Limited"), CallOutcome.THROTTLED, "7", None),
    ("4", fake_top.error(4, "User Call Limited"), CallOutcome.THROTTLED, "4", None),
    ("5", fake_top.error(5, "Session Call Limited"), CallOutcome.THROTTLED, "5", None),
    ("6", fake_top.error(6, "Partner Call Limited"), CallOutcome.THROTTLED, "6", None),
    ("8", fake_top.error(8, "Api Call Limited"), CallOutcome.THROTTLED, "8", None),
    (
        "isv-access-limited",
        fake_top.error(15, "x", "isv.access-limited-by-app-api-access-count"),
        CallOutcome.THROTTLED,
        "15",
        "isv.access-limited-by-app-api-access-count",
    ),
    ("25-signature", fake_top.error(25, "Invalid signature"), CallOutcome.REJECTED, "25", None),
    ("26-no-session", fake_top.error(26, "Missing session"), CallOutcome.REJECTED, "26", None),
    ("27-session", fake_top.error(27, "Invalid session"), CallOutcome.REJECTED, "27", None),
    ("29-app-key", fake_top.error(29, "Invalid app Key"), CallOutcome.REJECTED, "29", None),
    (
        "11-permission",
        fake_top.error(11, "Insufficient isv permissions", "isv.permission-api-package-limit"),
        CallOutcome.REJECTED,
        "11",
        "isv.permission-api-package-limit",
    ),
    ("31-timestamp", fake_top.error(31, "Invalid timestamp"), CallOutcome.REJECTED, "31", None),
    (
        "41-isv-args",
        fake_top.error(41, "Invalid arguments", "isv.invalid-parameter:user_id"),
        CallOutcome.REJECTED,
        "41",
        "isv.invalid-parameter:user_id",
    ),
    (
        "string-code",
        remote_error(code="7", msg="App Call Limited"),
        CallOutcome.THROTTLED,
        "7",
        None,
    ),
    (
        "jym-business-failure",
        fake_top.business_failure(result=False, state_code="USER_NOT_EXIST", extra_err_msg="无"),
        CallOutcome.REJECTED,
        None,
        "USER_NOT_EXIST",
    ),
    (
        "workcore-business-failure",
        fake_top.business_failure(error_code="500", error_msg="bad action", error_level="2"),
        CallOutcome.REJECTED,
        None,
        "500",
    ),
    (
        "is-success-false",
        TopReply(result={"is_success": False, "state_code": "E1"}),
        CallOutcome.REJECTED,
        None,
        "E1",
    ),
    (
        "success-as-string-false",
        TopReply(result={"success": "false", "error_code": "E2"}),
        CallOutcome.REJECTED,
        None,
        "E2",
    ),
    ("no-success-flag", TopReply(result={"content": True}), CallOutcome.SUCCESS, None, None),
    (
        "no-result",
        fake_top.raw(200, '{"jym_message_apppush_send_response":{}}'),
        CallOutcome.SUCCESS,
        None,
        None,
    ),
    (
        "simplified-success",
        fake_top.raw(200, '{"result":{"success":true},"request_id":"r"}'),
        CallOutcome.SUCCESS,
        None,
        None,
    ),
    (
        "simplified-business-failure",
        fake_top.raw(200, '{"result":{"success":false,"state_code":"X"}}'),
        CallOutcome.REJECTED,
        None,
        "X",
    ),
    ("http-502", fake_top.raw(502, "<html>bad gateway</html>"), CallOutcome.TRANSIENT, None, None),
    ("http-503-json", fake_top.raw(503, "{}"), CallOutcome.TRANSIENT, None, None),
    ("http-429", fake_top.raw(429, ""), CallOutcome.THROTTLED, None, None),
    (
        "http-403-not-top",
        fake_top.raw(403, "<html>denied</html>"),
        CallOutcome.REJECTED,
        None,
        None,
    ),
    (
        "http-400-with-top-error",
        fake_top.raw(400, '{"error_response":{"code":7,"msg":"App Call Limited"}}'),
        CallOutcome.THROTTLED,
        "7",
        None,
    ),
    ("200-not-json", fake_top.raw(200, "<html>portal</html>"), CallOutcome.UNKNOWN, None, None),
    ("200-json-array", fake_top.raw(200, "[]"), CallOutcome.UNKNOWN, None, None),
    ("302", fake_top.raw(302, ""), CallOutcome.UNKNOWN, None, None),
]


@pytest.mark.parametrize(
    ("reply", "outcome", "code", "sub_code"),
    [case[1:] for case in OUTCOMES],
    ids=[case[0] for case in OUTCOMES],
)
async def test_every_answer_is_classified(
    gateway: FakeTop,
    client: TopClient,
    reply: TopReply,
    outcome: CallOutcome,
    code: str | None,
    sub_code: str | None,
) -> None:
    gateway.script(reply)

    result = await client.call(credentials(gateway.url), JYM_APPPUSH_SEND, JYM_PARAMS)

    assert (result.outcome, result.code, result.sub_code) == (outcome, code, sub_code)


async def test_an_error_keeps_its_message_and_sub_message(
    gateway: FakeTop, client: TopClient
) -> None:
    gateway.script(fake_top.error(50, "Remote service error", "isv.invalid-parameter", "非法参数"))

    result = await client.call(credentials(gateway.url), JYM_APPPUSH_SEND, JYM_PARAMS)

    assert (result.msg, result.sub_msg) == ("Remote service error", "非法参数")
    assert result.node["request_id"] == "fake-request-id"


async def test_a_business_failure_keeps_the_business_code_and_message(
    gateway: FakeTop, client: TopClient
) -> None:
    gateway.script(fake_top.business_failure(state_code="TEMPLATE_OFF", extra_err_msg="模板下线"))

    result = await client.call(credentials(gateway.url), JYM_APPPUSH_SEND, JYM_PARAMS)

    assert (result.outcome, result.sub_code, result.sub_msg, result.error) == (
        CallOutcome.REJECTED,
        "TEMPLATE_OFF",
        "模板下线",
        "business_failure",
    )


async def test_a_wrong_secret_is_refused_by_the_gateways_own_check(
    gateway: FakeTop, client: TopClient
) -> None:
    result = await client.call(
        credentials(gateway.url, app_secret="not-the-secret"), JYM_APPPUSH_SEND, JYM_PARAMS
    )

    assert (result.outcome, result.code) == (CallOutcome.REJECTED, "25")
    assert gateway.received[0].refused == 25


@pytest.mark.parametrize(
    ("offset", "outcome"),
    [
        (timedelta(minutes=9), CallOutcome.SUCCESS),
        (timedelta(minutes=-9), CallOutcome.SUCCESS),
        (timedelta(minutes=11), CallOutcome.REJECTED),
    ],
)
async def test_the_gateway_checks_the_timestamp_against_its_clock(
    gateway: FakeTop, http: aiohttp.ClientSession, offset: timedelta, outcome: CallOutcome
) -> None:
    client = TopClient(http, Clock(NOW + offset), timeout=5.0)

    result = await client.call(credentials(gateway.url), JYM_APPPUSH_SEND, JYM_PARAMS)

    assert result.outcome is outcome


@pytest.fixture
def host_in_new_york() -> Iterator[None]:
    old = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


async def test_a_host_in_another_zone_still_sends_beijing_time(
    gateway: FakeTop, client: TopClient, host_in_new_york: None
) -> None:
    result = await client.call(credentials(gateway.url), JYM_APPPUSH_SEND, JYM_PARAMS)

    assert result.outcome is CallOutcome.SUCCESS
    assert gateway.received[0].params["timestamp"] == "2026-11-23 16:00:00"


async def test_a_timeout_is_transient(gateway: FakeTop, http: aiohttp.ClientSession) -> None:
    gateway.script(fake_top.hang())
    client = TopClient(http, Clock(), timeout=0.2)

    result = await client.call(credentials(gateway.url), JYM_APPPUSH_SEND, JYM_PARAMS)

    assert (result.outcome, result.error) == (CallOutcome.TRANSIENT, "timeout")
    assert len(gateway.received) == 1  # it did reach the platform: the outcome is unknown


async def test_a_connection_error_is_transient(http: aiohttp.ClientSession) -> None:
    fake = FakeTop({APP_KEY: SECRET}, Clock())
    url = await fake.start()
    await fake.close()

    result = await TopClient(http, Clock(), 5.0).call(credentials(url), JYM_APPPUSH_SEND, {})

    assert result.outcome is CallOutcome.TRANSIENT and result.error is not None


async def test_the_fake_merges_query_and_form_params_as_java_sends_them(
    gateway: FakeTop, http: aiohttp.ClientSession
) -> None:
    system = {
        "method": JYM_APPPUSH_SEND,
        "app_key": APP_KEY,
        "timestamp": "2026-11-23 16:00:00",
        "format": "json",
        "v": "2.0",
        "sign_method": "hmac",
    }
    business = {"user_id": "1", "push_content_dto": '{"title":"t"}'}
    system["sign"] = reference_top_sign({**system, **business}, SECRET, "hmac")

    async with http.post(gateway.url, params=system, data=business) as response:
        answer = await response.json()

    assert answer == {
        "jym_message_apppush_send_response": {"result": {"success": True}, "request_id": "fake-rid"}
    }
    assert (gateway.received[0].query.keys(), gateway.received[0].form.keys()) == (
        system.keys(),
        business.keys(),
    )


async def test_secrets_never_reach_the_logs(
    gateway: FakeTop, client: TopClient, caplog: pytest.LogCaptureFixture
) -> None:
    gateway.script(fake_top.error(25, "Invalid signature"), fake_top.raw(200, "not json"))
    app = credentials(gateway.url, session=SESSION)
    caplog.set_level(logging.DEBUG)

    results = [await client.call(app, JYM_APPPUSH_SEND, JYM_PARAMS) for _ in range(3)]

    assert [r.outcome for r in results] == [
        CallOutcome.REJECTED,
        CallOutcome.UNKNOWN,
        CallOutcome.SUCCESS,
    ]
    signatures = [request.params["sign"] for request in gateway.received]
    assert caplog.records, "the client logs each call"
    for secret in [SECRET, SESSION, *signatures]:
        assert secret not in caplog.text
        assert all(secret not in repr(result) for result in results)
    assert SECRET not in repr(app) and SESSION not in repr(app) and "shop" in repr(app)


def top_settings(**top_app: Any) -> Settings:
    key = spki_base64(rsa_key(1).public_key())
    return settings_from_mapping(
        {
            "apps": [{"app_id": "2021000000000001", "alipay_public_key": key}],
            "top_apps": [top_app] if top_app else [],
        },
        base_dir=Path.cwd(),
    )


def test_top_app_settings_have_the_documented_defaults() -> None:
    settings = top_settings(name="shop", app_key=APP_KEY, app_secret=SECRET)

    (app,) = settings.top_apps
    assert (app.sign_method, app.gateway_url, app.session) == (
        "hmac-sha256",
        "https://eco.taobao.com/router/rest",
        None,
    )
    assert SECRET not in repr(settings)


def test_top_credentials_are_loaded_by_name_with_secrets_kept_out_of_reprs() -> None:
    settings = top_settings(
        name="shop",
        app_key=APP_KEY,
        app_secret=SECRET,
        sign_method="md5",
        gateway_url="https://gw.api.tbsandbox.com/router/rest",
        session=SESSION,
    )

    loaded = load_top_credentials(settings)

    assert loaded == {
        "shop": TopAppCredentials(
            name="shop",
            app_key=APP_KEY,
            app_secret=SECRET,
            sign_method=TopSignMethod.MD5,
            gateway_url="https://gw.api.tbsandbox.com/router/rest",
            session=SESSION,
        )
    }
    assert SECRET not in repr(loaded) and SESSION not in repr(loaded)
    assert replace(loaded["shop"], session=None).session is None


@pytest.mark.parametrize(
    ("top_apps", "fragment"),
    [
        ([{"name": "a", "app_key": "1", "app_secret": SECRET}] * 2, "only once in [[top_apps]]"),
        (
            [{"name": "a", "app_key": "1", "app_secret": SECRET, "sign_method": "sha1"}],
            "sign_method",
        ),
        ([{"name": "a", "app_key": "1"}], "top_apps.0.app_secret"),
        ([{"name": "a", "app_key": "1", "app_secret": ""}], "top_apps.0.app_secret"),
        ([{"name": "bad name", "app_key": "1", "app_secret": SECRET}], "top_apps.0.name"),
        ([{"name": "a", "app_key": "1", "app_secret": SECRET, "extra": 1}], "top_apps.0.extra"),
    ],
)
def test_bad_top_apps_are_refused_without_echoing_the_secret(
    top_apps: list[dict[str, Any]], fragment: str
) -> None:
    key = spki_base64(rsa_key(1).public_key())
    with pytest.raises(SettingsError, match=re.escape(fragment)) as raised:
        settings_from_mapping(
            {"apps": [{"app_id": "1", "alipay_public_key": key}], "top_apps": top_apps},
            base_dir=Path.cwd(),
        )

    assert SECRET not in str(raised.value)
