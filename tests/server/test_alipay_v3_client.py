"""The Alipay v3 client against a fake v3 gateway on loopback that checks every request itself."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from server.credentials import AppCredentials, load_credentials
from server.errors import AppNotReady
from server.platforms.alipay_v3 import LABEL_SEND_PATH, AlipayV3Client, error_links
from server.platforms.calls import CallOutcome
from server.settings import Settings, SettingsError, settings_from_mapping
from tests.pki import make_cert_set, pkcs8_base64, private_pem_pkcs8, rsa_key, spki_base64
from tests.server.fake_alipay_v3 import FakeAlipayV3, V3Reply, v3_error
from verify import TrustedKey, VerificationPolicy

APP_ID = "2021000000000001"
NOW = datetime(2026, 11, 23, 8, 0, 0, tzinfo=UTC)
NOW_MS = "1795420800000"
LABEL_SEND: dict[str, Any] = {
    "filter": {
        "template": "${a}",
        "context": {"a": {"column_name": "label_id_list", "op": "in", "values": ["100509"]}},
    },
    "material": {"msg_type": "text", "text": {"title": "标题", "content": "内容"}},
}
LINKS_LIST = [{"link": "https://open.alipay.com/api/errCheck?traceId=1", "desc": "解决方案"}]
LINKS_STRING = "https://open.alipay.com/api/errCheck?traceId=2"


class Clock:
    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Ids:
    """Predictable nonces and request ids: 32 hex characters each."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> str:
        self.count += 1
        return f"{self.count:032x}"


def credentials(url: str, **overrides: Any) -> AppCredentials:
    fields: dict[str, Any] = {
        "app_id": APP_ID,
        "policy": VerificationPolicy(keys=(TrustedKey("key:alipay", rsa_key(1).public_key()),)),
        "app_private_key": rsa_key(2),
        "app_public_key_base64": None,
        "app_cert_sn": None,
        "alipay_root_cert_sn": None,
        "life_account_reply": "ack",
        "gateway_url": url + "/gateway.do",
        "v3_gateway_url": url,
        **overrides,
    }
    return AppCredentials(**fields)


def fake(**overrides: Any) -> FakeAlipayV3:
    fields: dict[str, Any] = {
        "app_id": APP_ID,
        "app_public_key": rsa_key(2).public_key(),
        "alipay_private_key": rsa_key(1),
        "other_private_key": rsa_key(3),
        "clock": Clock(),
        **overrides,
    }
    return FakeAlipayV3(**fields)


@pytest.fixture
async def gateway() -> AsyncIterator[FakeAlipayV3]:
    server = fake()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def client(http: aiohttp.ClientSession) -> AlipayV3Client:
    return AlipayV3Client(http, Clock(), timeout=5.0, new_id=Ids())


async def test_a_label_send_is_signed_sent_and_a_signed_200_is_success(
    gateway: FakeAlipayV3, client: AlipayV3Client
) -> None:
    gateway.script(V3Reply(body='{"msg_id":"m-1"}'))

    result = await client.call(credentials(gateway.url), "POST", LABEL_SEND_PATH, LABEL_SEND)

    assert (result.outcome, result.error, result.node) == (
        CallOutcome.SUCCESS,
        None,
        {"msg_id": "m-1"},
    )
    (request,) = gateway.received
    assert request.refused is None
    assert (request.method, request.target) == ("POST", LABEL_SEND_PATH)
    assert request.body == json.dumps(LABEL_SEND, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8"
    )
    assert request.auth == {
        "app_id": APP_ID,
        "nonce": "00000000000000000000000000000002",
        "timestamp": NOW_MS,
    }
    assert request.headers["alipay-request-id"] == "00000000000000000000000000000001"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["accept"] == "application/json"
    assert re.fullmatch(
        r"ALIPAY-SHA256withRSA app_id=\d+,nonce=\w+,timestamp=\d+,sign=[A-Za-z0-9+/=]+",
        request.headers["authorization"],
    )
    assert {"alipay-root-cert-sn", "alipay-app-auth-token"} & set(request.headers) == set()


async def test_every_call_has_a_fresh_nonce_and_request_id(
    gateway: FakeAlipayV3, http: aiohttp.ClientSession
) -> None:
    client = AlipayV3Client(http, Clock(), timeout=5.0)  # the default uuid4 ids

    for _ in range(2):
        await client.call(credentials(gateway.url), "POST", LABEL_SEND_PATH, LABEL_SEND)

    first, second = gateway.received
    assert first.refused is None and second.refused is None
    assert first.auth["nonce"] != second.auth["nonce"]
    assert first.headers["alipay-request-id"] != second.headers["alipay-request-id"]


async def test_a_query_is_sent_and_signed_byte_for_byte(
    gateway: FakeAlipayV3, client: AlipayV3Client
) -> None:
    path = LABEL_SEND_PATH + "?foo=b+a%26r&x=%E4%B8%AD"

    result = await client.call(credentials(gateway.url), "POST", path, LABEL_SEND)

    assert result.outcome is CallOutcome.SUCCESS
    assert gateway.received[0].target == path and gateway.received[0].refused is None


async def test_a_get_without_body_is_signed_over_an_empty_body(
    gateway: FakeAlipayV3, client: AlipayV3Client
) -> None:
    result = await client.call(credentials(gateway.url), "GET", "/v3/alipay/some/query?a=1", None)

    assert result.outcome is CallOutcome.SUCCESS
    assert (gateway.received[0].body, gateway.received[0].refused) == (b"", None)


async def test_an_app_auth_token_is_sent_and_signed(
    gateway: FakeAlipayV3, client: AlipayV3Client
) -> None:
    result = await client.call(
        credentials(gateway.url), "POST", LABEL_SEND_PATH, LABEL_SEND, app_auth_token="tok-1"
    )

    assert result.outcome is CallOutcome.SUCCESS
    assert gateway.received[0].headers["alipay-app-auth-token"] == "tok-1"


def cert_mode_credentials(url: str) -> AppCredentials:
    return credentials(
        url, app_cert_sn="app-sn-1", alipay_root_cert_sn="root-sn-1", alipay_cert_sns=("ali-sn-1",)
    )


@pytest.mark.parametrize(
    ("reply", "outcome"),
    [
        (V3Reply(), CallOutcome.SUCCESS),
        (V3Reply(omit_sn=True), CallOutcome.SUCCESS),
        (V3Reply(alipay_sn="ali-sn-other"), CallOutcome.UNKNOWN),
    ],
    ids=["matching-sn", "no-sn-sent", "other-sn"],
)
async def test_certificate_mode_sends_the_sns_and_checks_alipay_sn(
    http: aiohttp.ClientSession, reply: V3Reply, outcome: CallOutcome
) -> None:
    server = fake(alipay_sn="ali-sn-1", app_cert_sn="app-sn-1", root_cert_sn="root-sn-1")
    await server.start()
    server.script(reply)
    try:
        result = await AlipayV3Client(http, Clock(), 5.0).call(
            cert_mode_credentials(server.url), "POST", LABEL_SEND_PATH, LABEL_SEND
        )
    finally:
        await server.close()

    assert result.outcome is outcome
    (request,) = server.received
    assert request.refused is None
    assert request.auth["app_cert_sn"] == "app-sn-1"
    assert request.headers["alipay-root-cert-sn"] == "root-sn-1"
    assert list(request.auth) == ["app_id", "app_cert_sn", "nonce", "timestamp"]


OUTCOMES = [
    # (id, reply, outcome, code, msg)
    ("200-unsigned", V3Reply(signing="none"), CallOutcome.UNKNOWN, None, None),
    ("200-wrong-key", V3Reply(signing="wrong_key"), CallOutcome.UNKNOWN, None, None),
    ("200-no-trailing-newline", V3Reply(signing="no_newline"), CallOutcome.UNKNOWN, None, None),
    ("200-tampered", V3Reply(signing="tampered"), CallOutcome.UNKNOWN, None, None),
    ("200-empty-body", V3Reply(body=""), CallOutcome.SUCCESS, None, None),
    ("204", V3Reply(status=204, body=""), CallOutcome.SUCCESS, None, None),
    (
        "400-links-list",
        v3_error(400, "LABEL_GROUP_FILTER_EMPTY", "filter 为空", LINKS_LIST),
        CallOutcome.REJECTED,
        "LABEL_GROUP_FILTER_EMPTY",
        "filter 为空",
    ),
    (
        "400-links-string",
        v3_error(400, "ILLEGAL_BIZ_PARAMS", "参数错误", LINKS_STRING),
        CallOutcome.REJECTED,
        "ILLEGAL_BIZ_PARAMS",
        "参数错误",
    ),
    (
        "400-no-links",
        v3_error(400, "MSG_TYPE_ILLEGAL", "msg_type"),
        CallOutcome.REJECTED,
        "MSG_TYPE_ILLEGAL",
        "msg_type",
    ),
    (
        "401-invalid-signature",
        v3_error(401, "invalid-signature", "验签出错"),
        CallOutcome.REJECTED,
        "invalid-signature",
        "验签出错",
    ),
    (
        "429",
        v3_error(429, "app-call-limited", "限流"),
        CallOutcome.THROTTLED,
        "app-call-limited",
        "限流",
    ),
    (
        "403-app-call-limited",
        v3_error(403, "app-call-limited", "x"),
        CallOutcome.THROTTLED,
        "app-call-limited",
        "x",
    ),
    (
        "403-method-call-limited",
        v3_error(403, "method-call-limited", "x"),
        CallOutcome.THROTTLED,
        "method-call-limited",
        "x",
    ),
    (
        "400-system-error",
        v3_error(400, "SYSTEM_ERROR", "系统繁忙"),
        CallOutcome.TRANSIENT,
        "SYSTEM_ERROR",
        "系统繁忙",
    ),
    (
        "400-unknow-error",
        v3_error(400, "unknow-error", "x"),
        CallOutcome.TRANSIENT,
        "unknow-error",
        "x",
    ),
    (
        "500-system-error",
        v3_error(500, "SYSTEM_ERROR", "x"),
        CallOutcome.TRANSIENT,
        "SYSTEM_ERROR",
        "x",
    ),
    (
        "503-unsigned-html",
        V3Reply(status=503, body="<html>busy</html>", signing="none"),
        CallOutcome.TRANSIENT,
        None,
        None,
    ),
    (
        "400-unsigned",
        v3_error(400, "ILLEGAL_BIZ_PARAMS", "x", signing="none"),
        CallOutcome.UNKNOWN,
        "ILLEGAL_BIZ_PARAMS",
        "x",
    ),
    (
        "400-badly-signed",
        v3_error(400, "ILLEGAL_BIZ_PARAMS", "x", signing="wrong_key"),
        CallOutcome.UNKNOWN,
        "ILLEGAL_BIZ_PARAMS",
        "x",
    ),
    ("400-not-json", V3Reply(status=400, body="<html/>"), CallOutcome.REJECTED, None, None),
    ("302", V3Reply(status=302, body=""), CallOutcome.UNKNOWN, None, None),
]


@pytest.mark.parametrize(
    ("reply", "outcome", "code", "msg"),
    [case[1:] for case in OUTCOMES],
    ids=[case[0] for case in OUTCOMES],
)
async def test_every_answer_is_classified(
    gateway: FakeAlipayV3,
    client: AlipayV3Client,
    reply: V3Reply,
    outcome: CallOutcome,
    code: str | None,
    msg: str | None,
) -> None:
    gateway.script(reply)

    result = await client.call(credentials(gateway.url), "POST", LABEL_SEND_PATH, LABEL_SEND)

    assert (result.outcome, result.code, result.msg) == (outcome, code, msg)
    if outcome is CallOutcome.UNKNOWN and reply.status < 300:
        assert result.error is not None and result.error.startswith("bad_signature")


@pytest.mark.parametrize(
    ("reply", "outcome"),
    [
        (v3_error(400, "ILLEGAL_BIZ_PARAMS", "x", signing="none"), CallOutcome.REJECTED),
        (v3_error(403, "app-call-limited", "x", signing="none"), CallOutcome.THROTTLED),
        (v3_error(400, "ILLEGAL_BIZ_PARAMS", "x", signing="wrong_key"), CallOutcome.UNKNOWN),
        (V3Reply(signing="none"), CallOutcome.UNKNOWN),
    ],
    ids=["unsigned-400", "unsigned-403-limited", "badly-signed-400", "unsigned-200"],
)
async def test_accepting_unsigned_errors_classifies_them_but_never_a_bad_signature_or_a_200(
    gateway: FakeAlipayV3, http: aiohttp.ClientSession, reply: V3Reply, outcome: CallOutcome
) -> None:
    gateway.script(reply)
    client = AlipayV3Client(http, Clock(), 5.0, accept_unsigned_errors=True)

    result = await client.call(credentials(gateway.url), "POST", LABEL_SEND_PATH, LABEL_SEND)

    assert result.outcome is outcome


@pytest.mark.parametrize(
    ("links", "expected"),
    [
        (LINKS_LIST, ("https://open.alipay.com/api/errCheck?traceId=1",)),
        (LINKS_STRING, (LINKS_STRING,)),
        (["https://a", {"desc": "no link"}, 3, {"link": "https://b"}], ("https://a", "https://b")),
        ("", ()),
        (None, ()),
        ({"link": "x"}, ()),
    ],
    ids=["list-of-objects", "string", "mixed-list", "empty-string", "missing", "object"],
)
async def test_links_are_read_as_a_string_or_a_list(
    gateway: FakeAlipayV3, client: AlipayV3Client, links: object, expected: tuple[str, ...]
) -> None:
    gateway.script(v3_error(400, "ILLEGAL_BIZ_PARAMS", "x", links))

    result = await client.call(credentials(gateway.url), "POST", LABEL_SEND_PATH, LABEL_SEND)

    assert result.outcome is CallOutcome.REJECTED
    assert error_links(result.node) == expected


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"app_private_key": rsa_key(4)}, "invalid-signature"),
        ({"app_id": "2021000000000009"}, "invalid-app-id"),
    ],
)
async def test_the_gateways_own_checks_refuse_a_wrongly_signed_request(
    gateway: FakeAlipayV3, client: AlipayV3Client, overrides: dict[str, Any], code: str
) -> None:
    app = credentials(gateway.url, **overrides)

    result = await client.call(app, "POST", LABEL_SEND_PATH, LABEL_SEND)

    assert (result.outcome, result.code) == (CallOutcome.REJECTED, code)
    assert gateway.received[0].refused == code


@pytest.mark.parametrize(
    ("offset", "outcome"),
    [(timedelta(minutes=4), CallOutcome.SUCCESS), (timedelta(minutes=-6), CallOutcome.REJECTED)],
)
async def test_the_timestamp_is_epoch_milliseconds_of_the_clock(
    gateway: FakeAlipayV3, http: aiohttp.ClientSession, offset: timedelta, outcome: CallOutcome
) -> None:
    client = AlipayV3Client(http, Clock(NOW + offset), 5.0)

    result = await client.call(credentials(gateway.url), "POST", LABEL_SEND_PATH, LABEL_SEND)

    assert result.outcome is outcome
    expected_ms = int((NOW + offset).timestamp() * 1000)
    assert gateway.received[0].auth["timestamp"] == str(expected_ms)


async def test_a_timeout_is_transient(gateway: FakeAlipayV3, http: aiohttp.ClientSession) -> None:
    gateway.script(V3Reply(hang=True))
    client = AlipayV3Client(http, Clock(), timeout=0.2)

    result = await client.call(credentials(gateway.url), "POST", LABEL_SEND_PATH, LABEL_SEND)

    assert (result.outcome, result.error) == (CallOutcome.TRANSIENT, "timeout")
    assert len(gateway.received) == 1


async def test_a_connection_error_is_transient(http: aiohttp.ClientSession) -> None:
    server = fake()
    url = await server.start()
    await server.close()

    result = await AlipayV3Client(http, Clock(), 5.0).call(
        credentials(url), "POST", LABEL_SEND_PATH, LABEL_SEND
    )

    assert result.outcome is CallOutcome.TRANSIENT and result.error is not None


async def test_an_app_without_a_private_key_is_not_ready(client: AlipayV3Client) -> None:
    with pytest.raises(AppNotReady):
        await client.call(
            credentials("http://127.0.0.1:9", app_private_key=None), "POST", LABEL_SEND_PATH, {}
        )


@pytest.mark.parametrize("path", ["v3/alipay/x", "https://openapi.alipay.com/v3/x", "/v3/标签"])
async def test_a_path_that_is_not_an_encoded_absolute_path_is_refused(
    client: AlipayV3Client, path: str
) -> None:
    with pytest.raises(ValueError, match="path"):
        await client.call(credentials("http://127.0.0.1:9"), "POST", path, {})


async def test_no_key_material_or_signature_reaches_the_logs(
    gateway: FakeAlipayV3, client: AlipayV3Client, caplog: pytest.LogCaptureFixture
) -> None:
    gateway.script(v3_error(400, "ILLEGAL_BIZ_PARAMS", "x"), V3Reply(signing="wrong_key"))
    app = credentials(gateway.url)
    caplog.set_level(logging.DEBUG)

    results = [
        await client.call(app, "POST", LABEL_SEND_PATH, LABEL_SEND, app_auth_token="tok-secret")
        for _ in range(3)
    ]

    assert [r.outcome for r in results] == [
        CallOutcome.REJECTED,
        CallOutcome.UNKNOWN,
        CallOutcome.SUCCESS,
    ]
    assert "trace-1" in caplog.text  # the trace id is logged for support
    private = [pkcs8_base64(rsa_key(2)), private_pem_pkcs8(rsa_key(2))]
    signatures = [r.headers["authorization"].rsplit(",sign=", 1)[1] for r in gateway.received]
    for secret in [*private, *signatures, "tok-secret"]:
        assert secret not in caplog.text
    assert "PRIVATE" not in repr(app) and "RSAPrivateKey" not in repr(app)


def v3_settings(**app: Any) -> Settings:
    return settings_from_mapping(
        {
            "apps": [
                {
                    "app_id": APP_ID,
                    "alipay_public_key": spki_base64(rsa_key(1).public_key()),
                    "app_private_key": private_pem_pkcs8(rsa_key(2)),
                    **app,
                }
            ]
        },
        base_dir=Path.cwd(),
    )


def test_v3_settings_have_the_documented_defaults_and_reach_the_credentials() -> None:
    settings = v3_settings()

    (app,) = settings.apps
    assert (app.v3_gateway_url, app.label_sends_per_week) == ("https://openapi.alipay.com", 5)
    loaded = load_credentials(settings, NOW)[APP_ID]
    assert (loaded.v3_gateway_url, loaded.label_sends_per_week, loaded.alipay_cert_sns) == (
        "https://openapi.alipay.com",
        5,
        (),
    )


def test_v3_settings_can_be_changed() -> None:
    settings = v3_settings(
        v3_gateway_url="https://openapi-sandbox.dl.alipaydev.com", label_sends_per_week=3
    )

    loaded = load_credentials(settings, NOW)[APP_ID]

    assert (loaded.v3_gateway_url, loaded.label_sends_per_week) == (
        "https://openapi-sandbox.dl.alipaydev.com",
        3,
    )


@pytest.mark.parametrize("value", [0, -1])
def test_at_least_one_label_send_a_week(value: int) -> None:
    with pytest.raises(SettingsError, match=re.escape("apps.0.label_sends_per_week")):
        v3_settings(label_sends_per_week=value)


def test_certificate_mode_credentials_carry_the_alipay_certificate_sns(tmp_path: Path) -> None:
    certs = make_cert_set()
    (tmp_path / "alipay.crt").write_bytes(certs.alipay_cert_pem)
    (tmp_path / "root.crt").write_bytes(certs.root_bundle_pem)
    (tmp_path / "app.crt").write_bytes(certs.app_cert_pem)
    settings = settings_from_mapping(
        {
            "apps": [
                {
                    "app_id": APP_ID,
                    "alipay_cert_path": "alipay.crt",
                    "alipay_root_cert_path": "root.crt",
                    "app_cert_path": "app.crt",
                    "app_private_key": private_pem_pkcs8(certs.app_leaf_key),
                }
            ]
        },
        base_dir=tmp_path,
    )

    loaded = load_credentials(settings, NOW)[APP_ID]

    assert loaded.alipay_cert_sns == (certs.alipay_cert_sn,)
    assert (loaded.app_cert_sn, loaded.alipay_root_cert_sn) == (
        certs.app_cert_sn,
        certs.root_cert_sn,
    )
