"""No secret leaks: every flow runs with logging at DEBUG (the root logger, so aiohttp's access
log too) and nothing secret may appear in a log line, an error body, or the repr/str of the
settings and credential objects.

Secrets: the private keys (PEM PKCS#1 and PKCS#8, their bare base64 bodies and each PEM line),
the AES content key, the TOP app secret and session, the API tokens (and a guessed one), and
every ``sign`` value that travelled in a request or an answer (as is and form-encoded).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import re
import traceback
from collections.abc import AsyncIterator, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from server.credentials import load_credentials, load_top_credentials
from server.platforms.alipay_classic import _signer
from server.platforms.top import JYM_APPPUSH_SEND, TopClient
from server.settings import Settings, SettingsError, settings_from_mapping
from tests.oracle import form_body
from tests.pki import (
    make_cert_set,
    pkcs1_base64,
    pkcs8_base64,
    private_pem_pkcs1,
    private_pem_pkcs8,
    rsa_key,
    spki_base64,
)
from tests.server import fake_alipay as fake_alipay_module
from tests.server.api_client import ALL_TOKENS, Answer, Api, start_api, success_report
from tests.server.api_client import ONE_TIME as API_ONE_TIME
from tests.server.conftest import APP_ID, OTHER_APP_ID, Gateway, StartGateway, app_config
from tests.server.fake_alipay import (
    SEND_METHOD,
    FakeAlipay,
    badly_signed,
    encrypted,
    hang,
    http_500,
    rejected,
    transient,
    unsigned,
)
from tests.server.fake_top import FakeTop, business_failure, error, raw
from tests.server.fake_top import hang as top_hang
from tests.server.notifications import (
    aes_encrypt,
    life_account_fields,
    message_fields,
    signed,
    stranger_key,
    trade_fields,
)
from tests.server.send_fixtures import (
    TOKEN,
    USER,
    Sending,
    aes_key_base64,
    fake_alipay,
    new_key,
    one_time_body,
    send_settings,
    start_sending,
)
from tests.server.subgate_process import TOKEN as PROCESS_TOKEN
from tests.server.subgate_process import SubgateProcess

AES_KEY_B64 = aes_key_base64(41)
AES_KEY = base64.b64decode(AES_KEY_B64)
TOP_SECRET = "top-app-secret-3f9a1c7e5b2d4f60"
TOP_SESSION = "top-session-6100d2e8a7b94c1f9e3b"
GUESSED_TOKEN = "guessed-token-0f1e2d3c4b5a69788"
_SIGN_IN_REPLY = re.compile(r"<sign>([^<]+)</sign>")
_MIN_PIECE = 16  # shorter pieces of a key (a PEM's last line) could match by chance


class Secrets:
    """Everything that must never be shown, each with a label for the failure message."""

    def __init__(self) -> None:
        self.pieces: dict[str, str] = {}

    def add(self, label: str, value: str) -> None:
        if len(value) >= _MIN_PIECE:
            self.pieces[value] = label

    def add_private_key(self, label: str, key: RSAPrivateKey) -> None:
        # The private encodings hold the modulus, which the public key shows too: a PEM line
        # that is all modulus is public, every other line is not.
        public = spki_base64(key.public_key()) + public_pkcs1_base64(key)
        for form, body in (("pkcs1", pkcs1_base64(key)), ("pkcs8", pkcs8_base64(key))):
            self.add(f"{label} {form} base64", body)
            for start in range(0, len(body), 64):  # each line of its PEM
                line = body[start : start + 64]
                if line not in public:
                    self.add(f"{label} {form} PEM line {start // 64}", line)
        for form, pem in (("pkcs1", private_pem_pkcs1(key)), ("pkcs8", private_pem_pkcs8(key))):
            self.add(f"{label} {form} PEM", pem)

    def add_aes_key(self, label: str, key: bytes) -> None:
        self.add(f"{label} base64", base64.b64encode(key).decode("ascii"))
        self.add(f"{label} hex", key.hex())
        self.add(f"{label} bytes repr", repr(key)[2:-1])

    def add_sign(self, where: str, value: str) -> None:
        self.add(f"sign of {where}", value)
        self.add(f"sign of {where} (form-encoded)", quote_plus(value))

    def found_in(self, text: str) -> list[str]:
        return sorted({label for piece, label in self.pieces.items() if piece in text})


def public_pkcs1_base64(key: RSAPrivateKey) -> str:
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.PKCS1
    )
    return base64.b64encode(der).decode("ascii")


def base_secrets() -> Secrets:
    secrets = Secrets()
    secrets.add_private_key("Alipay stand-in private key", rsa_key(1))
    secrets.add_private_key("app private key", rsa_key(2))
    secrets.add_private_key("stranger private key", rsa_key(3))
    secrets.add_aes_key("AES key", AES_KEY)
    secrets.add("TOP app secret", TOP_SECRET)
    secrets.add("TOP session", TOP_SESSION)
    secrets.add("guessed API token", GUESSED_TOKEN)
    secrets.add("API token", TOKEN)
    secrets.add("process API token", PROCESS_TOKEN)
    return secrets


class Shown:
    """What an outsider or an operator sees: error bodies (and their headers) and API bodies."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def answer(self, status: int, headers: Iterable[tuple[str, str]], body: str) -> None:
        self.texts.append(f"{status} {dict(headers)} {body}")


def log_text(records: Iterable[logging.LogRecord]) -> str:
    """Each record as a handler would write it: message, traceback and stack."""
    lines = []
    for record in records:
        lines.append(f"{record.name} {record.levelname} {record.getMessage()}")
        if record.exc_info:
            lines.append("".join(traceback.format_exception(*record.exc_info)))
        if record.stack_info:
            lines.append(record.stack_info)
    return "\n".join(lines)


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)  # the root logger: every library's records, access log too
    yield caplog


def assert_nothing_leaked(
    secrets: Secrets, caplog: pytest.LogCaptureFixture, shown: Shown, *, min_records: int = 1
) -> None:
    logs = log_text(caplog.records)
    assert len(caplog.records) >= min_records, "the flow logged nothing: the check proves nothing"
    assert any(r.name == "aiohttp.access" for r in caplog.records), "no access log captured"
    assert secrets.found_in(logs) == []
    assert secrets.found_in("\n".join(shown.texts)) == []


# -- notifications ------------------------------------------------------------------------------


async def post_and_show(
    gateway: Gateway, shown: Shown, secrets: Secrets, fields: dict[str, str], **options: Any
) -> tuple[int, str, bytes]:
    """Post; every sign that travels is a secret, every refusal is shown."""
    if "sign" in fields:
        secrets.add_sign("a notification", fields["sign"])
    charset = options.get("charset", "utf-8")
    response = await gateway.client.post(
        options.get("path", "/alipay/notify"),
        data=options.get("body") or form_body(fields, charset),
        headers={"Content-Type": f"application/x-www-form-urlencoded; charset={charset.upper()}"},
    )
    body = await response.read()
    text = body.decode(charset, errors="replace")
    for reply_sign in _SIGN_IN_REPLY.findall(text):
        secrets.add_sign("a gateway-check reply", reply_sign)
    if response.status != 200:
        shown.answer(response.status, response.headers.items(), text)
    return response.status, response.headers.get("X-Subgate-Error", ""), body


@pytest.fixture
async def key_mode(start_gateway: StartGateway, tmp_path: Path) -> Gateway:
    """APP_ID: key mode, RSA2 and RSA, AES, a PKCS#1 PEM private key; OTHER_APP_ID: base64 #8."""
    settings = settings_from_mapping(
        {
            "storage": {"url": f"sqlite:///{tmp_path / 'subgate.db'}"},
            "apps": [
                app_config(
                    APP_ID, encrypt_key=AES_KEY_B64, app_private_key=private_pem_pkcs1(rsa_key(2))
                ),
                app_config(OTHER_APP_ID, app_private_key=pkcs8_base64(rsa_key(2))),
            ],
        },
        base_dir=tmp_path,
    )
    return await start_gateway(settings)


async def test_notifications_in_key_mode_with_aes_and_refusals_log_and_show_no_secret(
    key_mode: Gateway, debug_logs: pytest.LogCaptureFixture
) -> None:
    secrets, shown = base_secrets(), Shown()
    ciphertext = aes_encrypt(AES_KEY, '{"complain_event_id":"1"}')
    good = signed(trade_fields())
    accepted: list[tuple[dict[str, str], dict[str, Any]]] = [
        (good, {}),
        (good, {}),  # a duplicate
        (signed(trade_fields(OTHER_APP_ID), sign_type="RSA"), {}),
        (signed(message_fields(biz_content=ciphertext, encrypt_type="AES")), {}),
        (signed(life_account_fields("verifygw"), rule="V2", charset="gbk"), {"charset": "gbk"}),
        (signed(life_account_fields("follow"), rule="V2", charset="gbk"), {"charset": "gbk"}),
    ]
    refused: list[tuple[dict[str, str], dict[str, Any]]] = [
        ({**good, "total_amount": "999.00"}, {}),
        (signed(trade_fields(), key=stranger_key()), {}),
        (signed(message_fields(biz_content="A" * 31 + "=", encrypt_type="AES")), {}),
        (signed(trade_fields("2021000000009999")), {}),
        (good, {"path": f"/alipay/notify/{OTHER_APP_ID}"}),
        (good, {"body": form_body(good) + b"&sign=" + quote_plus(good["sign"]).encode()}),
        (good, {"body": b"sign=%zz&" + form_body(good)}),
        ({**good, "sign": good["sign"][:-8]}, {}),
    ]

    statuses = [
        (await post_and_show(key_mode, shown, secrets, fields, **options))[0]
        for fields, options in accepted + refused
    ]

    assert statuses[: len(accepted)] == [200] * len(accepted)
    assert all(status >= 400 for status in statuses[len(accepted) :])
    assert_nothing_leaked(secrets, debug_logs, shown)


async def test_notifications_in_certificate_mode_log_and_show_no_secret(
    start_gateway: StartGateway, tmp_path: Path, debug_logs: pytest.LogCaptureFixture
) -> None:
    certs = make_cert_set()
    (tmp_path / "alipay.crt").write_bytes(certs.alipay_cert_pem)
    (tmp_path / "root.crt").write_bytes(certs.root_bundle_pem)
    (tmp_path / "app.crt").write_bytes(certs.app_cert_pem)
    key_file = tmp_path / "app_private_key.pem"
    key_file.write_text(private_pem_pkcs8(certs.app_leaf_key))
    key_file.chmod(0o600)
    app = app_config(
        APP_ID,
        alipay_public_key=None,
        alipay_cert_path="alipay.crt",
        alipay_root_cert_path="root.crt",
        app_cert_path="app.crt",
        app_private_key="app_private_key.pem",  # a path: the key is read from the file
    )
    settings = settings_from_mapping(
        {"storage": {"url": f"sqlite:///{tmp_path / 'subgate.db'}"}, "apps": [app]},
        base_dir=tmp_path,
    )
    gateway = await start_gateway(settings)
    secrets, shown = base_secrets(), Shown()
    secrets.add_private_key("app certificate private key", certs.app_leaf_key)
    secrets.add_private_key("Alipay certificate private key", certs.alipay_leaf_key)

    answers = [
        await post_and_show(gateway, shown, secrets, signed(trade_fields(), key=key))
        for key in (certs.alipay_leaf_key, rsa_key(1))
    ]
    check = signed(
        life_account_fields("verifygw"), key=certs.alipay_leaf_key, rule="V2", charset="gbk"
    )
    answers.append(await post_and_show(gateway, shown, secrets, check, charset="gbk"))

    assert [status for status, _, _ in answers] == [200, 403, 200]
    assert_nothing_leaked(secrets, debug_logs, shown)


# -- the consent API ----------------------------------------------------------------------------


async def call_api(api: Api, shown: Shown, method: str, path: str, **kwargs: Any) -> Answer:
    answer = await api.request(method, path, **kwargs)
    shown.answer(answer.status, answer.headers.items(), answer.text)  # every /v1 body counts
    return answer


async def test_consent_api_calls_and_refusals_log_and_show_no_token(
    start_gateway: StartGateway, tmp_path: Path, debug_logs: pytest.LogCaptureFixture
) -> None:
    api = await start_api(start_gateway, tmp_path)
    secrets, shown = base_secrets(), Shown()
    for index, token in enumerate(ALL_TOKENS):
        secrets.add(f"API token #{index}", token)
    user = f"/v1/apps/{APP_ID}/users/{USER}"
    report = success_report(API_ONE_TIME)

    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", f"{user}/subscribe-results", {"json_body": report, "headers": _idem()}),
        ("GET", f"{user}/subscriptions", {}),
        ("GET", f"{user}/subscriptions/{API_ONE_TIME}", {}),
        ("GET", f"{user}/subscriptions/{API_ONE_TIME}/history", {}),
        (
            "POST",
            f"/v1/apps/{APP_ID}/subscriptions:lookup",
            {"json_body": {"template_id": API_ONE_TIME, "user_ids": [USER]}},
        ),
        (
            "PUT",
            f"{user}/consents/jym_push/{API_ONE_TIME}",
            {"json_body": {"status": "granted", "evidence": "settings page"}},
        ),
        ("POST", f"{user}/subscribe-results", {"data": b"{", "headers": _idem()}),
        ("POST", f"{user}/subscribe-results", {"json_body": {"show": "x"}, "headers": _idem()}),
        ("GET", f"/v1/apps/{OTHER_APP_ID}/users/{USER}/subscriptions", {}),
    ]
    statuses = [
        (await call_api(api, shown, method, path, **kwargs)).status
        for method, path, kwargs in calls
    ]
    for token in (GUESSED_TOKEN, "", f"Basic {GUESSED_TOKEN}"):
        guessed = Api(api.gateway, token or None)
        statuses.append((await call_api(guessed, shown, "GET", f"{user}/subscriptions")).status)
    wrong_app = Api(api.gateway, ALL_TOKENS[3])  # OTHER_APP_ID's token
    statuses.append((await call_api(wrong_app, shown, "GET", f"{user}/subscriptions")).status)

    assert statuses == [200] * 6 + [400, 422, 200, 401, 401, 401, 403]
    assert_nothing_leaked(secrets, debug_logs, shown)


def _idem() -> dict[str, str]:
    return {"Idempotency-Key": new_key()}


BAD_TOKEN_LINES = [
    f"Authorization: Bearer {ALL_TOKENS[0]}\x00".encode(),
    f"Authorization: Bearer {ALL_TOKENS[0]}\rX: 1".encode(),
    f"X-A: 1\r\n Authorization: Bearer {ALL_TOKENS[0]}".encode(),  # obs-fold
]


async def refused_statuses(api: Api, request_line: str) -> list[int]:
    """Each of ``BAD_TOKEN_LINES`` in a request of its own after ``request_line``: the statuses."""
    statuses = []
    for line in BAD_TOKEN_LINES:
        reader, writer = await asyncio.open_connection(
            api.gateway.client.host, api.gateway.client.port
        )
        writer.write(f"{request_line}\r\nHost: 127.0.0.1\r\n".encode() + line + b"\r\n\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(65536), 10)
        writer.close()
        await writer.wait_closed()
        statuses.append(int(answer.split(b" ", 2)[1]))
    return statuses


def token_secrets() -> Secrets:
    secrets = base_secrets()
    for index, token in enumerate(ALL_TOKENS):
        secrets.add(f"API token #{index}", token)
    return secrets


async def test_a_request_the_http_parser_refuses_logs_no_token_it_carried(
    start_gateway: StartGateway, tmp_path: Path, debug_logs: pytest.LogCaptureFixture
) -> None:
    """aiohttp logs a refused request with the parser's message, which quotes the bad line;
    Subgate's filter keeps the fact and drops the bytes. (The plain-text 400 quotes the line
    back to the sender: its own bytes, not shown to anyone else.)"""
    api = await start_api(start_gateway, tmp_path)
    path = f"/v1/apps/{APP_ID}/subscriptions:lookup"  # a POST: aiohttp's, not the lane's

    assert await refused_statuses(api, f"POST {path} HTTP/1.1") == [400, 400, 400]
    refused = [r for r in debug_logs.records if r.name == "aiohttp.server"]
    assert len(refused) == 3
    assert {r.getMessage().split(": ")[0] for r in refused} == {
        "refused a malformed HTTP request from 127.0.0.1"
    }
    assert token_secrets().found_in(log_text(debug_logs.records)) == []


async def test_a_request_the_lane_refuses_logs_no_token_it_carried(
    start_gateway: StartGateway, tmp_path: Path, debug_logs: pytest.LogCaptureFixture
) -> None:
    """The lookup lane's parser (llhttp) refuses the same lines: 400, and no log line holds the
    token."""
    api = await start_api(start_gateway, tmp_path)
    path = f"/v1/apps/{APP_ID}/users/{USER}/subscriptions/{API_ONE_TIME}"

    assert await refused_statuses(api, f"GET {path} HTTP/1.1") == [400, 400, 400]
    assert debug_logs.records  # the log was captured (the store's migrations at least)
    assert token_secrets().found_in(log_text(debug_logs.records)) == []


# -- sending, reconciliation --------------------------------------------------------------------


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeAlipay]:
    async with fake_alipay(monkeypatch) as running:
        yield running


@pytest.fixture
def answer_signs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every ``sign`` the fake Alipay put in an answer."""
    recorded: list[str] = []
    real = fake_alipay_module._sign

    def recording(key: str, content: str) -> str:
        value = real(key, content)
        recorded.append(value)
        return value

    monkeypatch.setattr(fake_alipay_module, "_sign", recording)
    return recorded


async def send_and_show(env: Sending, shown: Shown, body: Any = None) -> Any:
    answer = await env.send(body)
    shown.answer(answer.status, answer.headers.items(), str(answer.body))
    return answer


async def test_sends_and_reconciliation_with_aes_log_and_show_no_key_or_sign(
    start_gateway: StartGateway,
    tmp_path: Path,
    fake: FakeAlipay,
    answer_signs: list[str],
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    fake.encrypt_key = AES_KEY
    settings = send_settings(tmp_path, fake, encrypt_key=AES_KEY_B64)
    env = await start_sending(start_gateway, tmp_path, fake, settings)
    secrets, shown = base_secrets(), Shown()
    fake.script(
        SEND_METHOD,
        encrypted(),
        rejected("USER_TEMPLATE_ILLEGAL"),
        transient(),
        unsigned(),
        badly_signed(),
        http_500(),
        encrypted(aes_key=bytes(16)),
        hang(),
    )
    await env.give_credits(9)
    answers = [await send_and_show(env, shown) for _ in range(8)]
    assert [a.status for a in answers] == [200, 200, 202, 202, 202, 202, 202, 202], answers
    fake.subscribed(USER, API_ONE_TIME)
    synced = await env.sync()
    shown.answer(synced.status, synced.headers.items(), str(synced.body))
    for message in [a.body for a in answers]:
        got = await env.message(message["message_id"])
        shown.answer(got.status, got.headers.items(), str(got.body))
    refused = await env.request("POST", f"/v1/apps/{APP_ID}/messages", {"channel": "sms"})
    shown.answer(refused.status, refused.headers.items(), str(refused.body))

    for call in fake.calls:
        secrets.add_sign("a call to Alipay", call.params["sign"])
    for value in answer_signs:
        secrets.add_sign("an Alipay answer", value)
    assert len(fake.sends) == 8 and len(answer_signs) >= 6
    assert {a.body["status"] for a in answers} >= {"sent", "failed", "queued", "unknown"}
    assert synced.status == 200
    assert_nothing_leaked(secrets, debug_logs, shown)


async def test_sends_in_certificate_mode_log_and_show_no_key_or_sign(
    start_gateway: StartGateway,
    tmp_path: Path,
    fake: FakeAlipay,
    answer_signs: list[str],
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    certs = make_cert_set()
    (tmp_path / "alipay.crt").write_bytes(certs.alipay_cert_pem)
    (tmp_path / "root.crt").write_bytes(certs.root_bundle_pem)
    (tmp_path / "app.crt").write_bytes(certs.app_cert_pem)
    fake.app_public_key = certs.app_leaf_key.public_key()
    fake.alipay_key = certs.alipay_leaf_key
    fake.alipay_cert_sn = certs.alipay_cert_sn
    settings = send_settings(
        tmp_path,
        fake,
        alipay_public_key=None,
        alipay_cert_path="alipay.crt",
        alipay_root_cert_path="root.crt",
        app_cert_path="app.crt",
        app_private_key=pkcs1_base64(certs.app_leaf_key),
    )
    env = await start_sending(start_gateway, tmp_path, fake, settings)
    secrets, shown = base_secrets(), Shown()
    secrets.add_private_key("app certificate private key", certs.app_leaf_key)
    secrets.add_private_key("Alipay certificate private key", certs.alipay_leaf_key)
    fake.script(SEND_METHOD, badly_signed())
    await env.give_credits(2)

    answers = [await send_and_show(env, shown, one_time_body()) for _ in range(2)]

    for call in fake.calls:
        secrets.add_sign("a call to Alipay", call.params["sign"])
    for value in answer_signs:
        secrets.add_sign("an Alipay answer", value)
    assert [a.body["status"] for a in answers] == ["unknown", "sent"]
    assert_nothing_leaked(secrets, debug_logs, shown)


# -- TOP ------------------------------------------------------------------------------------------


class TopClock:
    def __call__(self) -> datetime:
        return datetime.now(UTC)


async def test_top_calls_log_no_app_secret_session_or_sign(
    tmp_path: Path, debug_logs: pytest.LogCaptureFixture
) -> None:
    settings = settings_from_mapping(
        {
            "apps": [app_config(APP_ID, app_private_key=None)],
            "top_apps": [
                {
                    "name": "shop",
                    "app_key": "12345678",
                    "app_secret": TOP_SECRET,
                    "session": TOP_SESSION,
                    "gateway_url": "http://127.0.0.1:9/router/rest",
                }
            ],
        },
        base_dir=tmp_path,
    )
    top = FakeTop({"12345678": TOP_SECRET}, TopClock())
    await top.start()
    secrets, shown = base_secrets(), Shown()
    try:
        credentials = load_top_credentials(settings)["shop"]
        app = dataclasses.replace(credentials, gateway_url=top.url)
        top.script(
            business_failure(state_code="E1"),
            error(27, "Invalid session", "invalid-sessionkey"),
            raw(500, "oops"),
            top_hang(),
        )
        params = {"user_id": 1, "message_id": "m-1", "template_id": 1}
        async with aiohttp.ClientSession() as session:
            client = TopClient(session, TopClock(), timeout=0.5)
            results = [await client.call(app, JYM_APPPUSH_SEND, params) for _ in range(5)]
    finally:
        await top.close()

    for received in top.received:
        secrets.add_sign("a TOP call", received.params["sign"])
    assert [r.refused for r in top.received] == [None] * 5
    assert [r.outcome.value for r in results] == [
        "rejected",
        "rejected",
        "transient",
        "transient",
        "success",
    ]
    assert secrets.found_in(repr(results)) == []
    assert_nothing_leaked(secrets, debug_logs, shown, min_records=5)


# -- reprs and configuration errors ---------------------------------------------------------------


def full_settings(tmp_path: Path) -> Settings:
    return settings_from_mapping(
        {
            "storage": {"url": f"sqlite:///{tmp_path / 'subgate.db'}"},
            "apps": [
                app_config(
                    APP_ID, encrypt_key=AES_KEY_B64, app_private_key=private_pem_pkcs8(rsa_key(2))
                ),
                app_config(OTHER_APP_ID, app_private_key=pkcs1_base64(rsa_key(2))),
            ],
            "tokens": [{"token": TOKEN, "apps": ["*"], "scopes": ["read"]}],
            "top_apps": [
                {
                    "name": "shop",
                    "app_key": "12345678",
                    "app_secret": TOP_SECRET,
                    "session": TOP_SESSION,
                }
            ],
        },
        base_dir=tmp_path,
    )


def shown_forms(value: object) -> str:
    return f"{value!r}\n{value!s}"


def test_reprs_of_settings_and_credentials_show_no_secret(tmp_path: Path) -> None:
    settings = full_settings(tmp_path)
    credentials = load_credentials(settings, datetime.now(UTC))
    top = load_top_credentials(settings)
    objects: list[object] = [
        settings,
        settings.model_dump(),
        settings.model_dump_json(),
        *settings.apps,
        *settings.tokens,
        *settings.top_apps,
        credentials,
        *credentials.values(),
        *(app.policy for app in credentials.values()),
        *(_signer(app) for app in credentials.values()),
        top,
        *top.values(),
    ]

    leaks = {
        f"#{index} {type(o).__name__}": base_secrets().found_in(shown_forms(o))
        for index, o in enumerate(objects)
    }

    assert {name: found for name, found in leaks.items() if found} == {}


@pytest.mark.parametrize(
    ("app", "extra"),
    [
        pytest.param(
            {"app_private_key": private_pem_pkcs8(rsa_key(2)).replace("A", "!", 3)},
            {},
            id="corrupt-private-key-pem",
        ),
        pytest.param(
            {"app_private_key": pkcs8_base64(rsa_key(2))[:-200]}, {}, id="truncated-base64-key"
        ),
        pytest.param({"encrypt_key": AES_KEY_B64[:-4]}, {}, id="aes-key-of-wrong-length"),
        pytest.param(
            {}, {"tokens": [{"token": TOKEN[:12], "apps": ["*"], "scopes": ["read"]}]}, id="short"
        ),
        pytest.param(
            {},
            {"tokens": [{"token": TOKEN, "apps": ["*"], "scopes": ["read"]}] * 2},
            id="duplicate-token",
        ),
        pytest.param(
            {},
            {"top_apps": [{"name": "x", "app_key": "1", "app_secret": TOP_SECRET, "nope": 1}]},
            id="top-app-unknown-key",
        ),
    ],
)
def test_a_configuration_error_names_the_key_but_never_its_value(
    tmp_path: Path, app: dict[str, Any], extra: dict[str, Any]
) -> None:
    secrets = base_secrets()
    secrets.add("short token", TOKEN[:12])
    for value in app.values():
        secrets.add("the bad value", str(value))

    with pytest.raises(SettingsError) as raised:
        settings = settings_from_mapping(
            {"apps": [app_config(APP_ID, **app)], **extra}, base_dir=tmp_path
        )
        load_credentials(settings, datetime.now(UTC))

    message = str(raised.value)
    assert "app" in message or "tokens" in message or "top_apps" in message
    assert secrets.found_in(message + repr(raised.value)) == []


# -- the real entry point at DEBUG ----------------------------------------------------------------


async def test_run_py_at_debug_logs_no_secret_across_a_notification_a_report_and_a_send(
    tmp_path: Path, fake: FakeAlipay, answer_signs: list[str]
) -> None:
    server = SubgateProcess(tmp_path, fake.url, log_level="DEBUG")
    secrets = base_secrets()
    notification = signed(trade_fields(when=datetime.now(UTC)))
    secrets.add_sign("a notification", notification["sign"])
    auth = {"Authorization": f"Bearer {PROCESS_TOKEN}"}
    async with aiohttp.ClientSession() as http:
        await server.start(http)
        try:
            statuses = []
            headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
            for fields in (notification, {**notification, "total_amount": "1.00"}):
                async with http.post(
                    f"{server.url}/alipay/notify", data=form_body(fields), headers=headers
                ) as answer:
                    statuses.append(answer.status)
            user = f"{server.url}/v1/apps/{APP_ID}/users/{USER}"
            async with http.post(
                f"{user}/subscribe-results",
                json=success_report(API_ONE_TIME),
                headers={**auth, "Idempotency-Key": "r-1"},
            ) as answer:
                statuses.append(answer.status)
            async with http.post(
                f"{server.url}/v1/apps/{APP_ID}/messages",
                json=one_time_body(),
                headers={**auth, "Idempotency-Key": "s-1"},
            ) as answer:
                statuses.append(answer.status)
            async with http.get(
                f"{user}/subscriptions", headers={"Authorization": f"Bearer {GUESSED_TOKEN}"}
            ) as answer:
                statuses.append(answer.status)
        finally:
            await server.stop()
    for call in fake.calls:
        secrets.add_sign("a call to Alipay", call.params["sign"])
    for value in answer_signs:
        secrets.add_sign("an Alipay answer", value)
    log = server.log.read_text(errors="replace")

    assert statuses == [200, 403, 200, 200, 401]
    assert len(fake.sends) == 1
    assert " DEBUG " in log and "aiohttp.access" in log
    assert secrets.found_in(log) == []
