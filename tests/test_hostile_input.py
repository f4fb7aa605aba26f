"""Hostile input on every route: each answer is its documented status and code (docs/errors.md)
and nothing is stored (every ledger table compared before and after).

What the other suites already hold is not repeated here: the one-change refusals of a signed
notification (tests/server/test_notify_refused.py), malformed JSON and bad ids on the consent
routes (tests/server/test_api_errors.py), tokens on every route (tests/server/test_api_auth.py).
This file adds a thin table that reaches every route with what those lack (injection-shaped
ids and values, replays, bodies of the send route, raw bytes the HTTP parser refuses), then:

- hypothesis: arbitrary bytes and headers to the notification routes never get a 500 and never
  store anything; any single-field change of a signed notification is refused unless what was
  signed (the decoded sign content, rebuilt by the official SDK) is byte-identical;
- schemathesis against the live /openapi.json: no 5xx, and every answer conforms to the document.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Ok

from server.credentials import AppCredentials, load_credentials
from server.settings import Settings, settings_from_mapping
from tests.oracle import form_body, oracle_content
from tests.server.conftest import APP_ID, NOW, OTHER_APP_ID, Gateway, StartGateway, app_config
from tests.server.fake_alipay import FakeAlipay
from tests.server.notifications import (
    ALIPAY_CONTENT_TYPE,
    life_account_fields,
    message_fields,
    signed,
    stranger_key,
    trade_fields,
)
from tests.server.send_fixtures import (
    LONG_TERM,
    ONE_TIME,
    OUTBOX,
    TEMPLATES,
    USER,
    accepted_report,
    fake_alipay,
    one_time_body,
)

ADMIN_TOKEN = "hostile-admin-token-0123456789"
MAX_BODY_BYTES = 8192
TABLES = ("notifications", "consent_events", "consents", "subscribe_reports", "messages")
STORED_NOTIFY_ID = "stored-notification-0001"
STORED_REPORT_KEY = "stored-report-0001"
STORED_SEND_KEY = "stored-send-0001"

# Injection-shaped ids: each is outside the id alphabet, so the path check refuses it.
SQL = "' OR '1'='1"
TRAVERSAL = "../../etc/passwd"
NUL = "a\x00b"
LONG = "9" * 5000  # the request line stays under aiohttp's 8190-byte limit
CONFUSABLE = "２０８８１０２１２２４５８８３２"  # fullwidth digits that look like a user id
HOSTILE_IDS = {
    "sql": SQL,
    "traversal": TRAVERSAL,
    "nul": NUL,
    "long": LONG,
    "confusable": CONFUSABLE,
}


def in_a_body(value: str, status: int, code: str | None) -> tuple[int, str | None]:
    """The answer to a hostile id inside a JSON body: a NUL is refused as ``invalid_json`` (no
    store keeps one on every backend) before the body is read as a request."""
    return (400, "invalid_json") if "\x00" in value else (status, code)


def hostile_settings(tmp_path: Path, gateway_url: str) -> Settings:
    return settings_from_mapping(
        {
            "server": {"max_body_bytes": MAX_BODY_BYTES},
            "storage": {"url": f"sqlite:///{tmp_path / 'subgate.db'}", "busy_timeout_ms": 200},
            "apps": [
                app_config(
                    APP_ID,
                    templates=TEMPLATES,
                    gateway_url=gateway_url,  # every platform call stays on loopback
                    v3_gateway_url=gateway_url.removesuffix("/gateway.do"),
                ),
                app_config(OTHER_APP_ID, app_private_key=None),
            ],
            "tokens": [{"token": ADMIN_TOKEN, "apps": ["*"], "scopes": ["read", "write", "send"]}],
            "outbox": OUTBOX,
        },
        base_dir=tmp_path,
    )


_CREDENTIALS: dict[str, dict[str, AppCredentials]] = {}


def credentials(config: Settings) -> dict[str, AppCredentials]:
    """Parsed once per gateway URL (RSA parsing is slow)."""
    url = config.apps[0].gateway_url
    if url not in _CREDENTIALS:
        _CREDENTIALS[url] = load_credentials(config, NOW)
    return _CREDENTIALS[url]


@dataclass
class Target:
    """A running gateway with one stored notification, report and message (for replays)."""

    gateway: Gateway
    fake: FakeAlipay
    stored_notification: dict[str, str] = field(default_factory=dict)

    def rows(self) -> dict[str, list[tuple[Any, ...]]]:
        uri = f"{self.gateway.db_path.resolve().as_uri()}?mode=ro"
        connection = sqlite3.connect(uri, uri=True)
        try:
            return {
                table: sorted(
                    connection.execute(f"SELECT * FROM {table}").fetchall(),  # noqa: S608
                    key=repr,
                )
                for table in TABLES
            }
        finally:
            connection.close()


@dataclass(frozen=True)
class Answer:
    status: int
    code: str | None  # X-Subgate-Error, the JSON error code, or None
    body: bytes


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None  # sent as is on a socket (what a client library refuses to send)


async def send(target: Target, request: Request) -> Answer:
    if request.raw is not None:
        return await send_raw(target.gateway, request.raw)
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", **request.headers}
    response = await target.gateway.client.request(
        request.method, request.path, data=request.body, headers=headers
    )
    body = await response.read()
    code = error_code(response.headers.get("X-Subgate-Error"), response.content_type, body)
    return Answer(response.status, code, body)


def error_code(header: str | None, content_type: str, body: bytes) -> str | None:
    """The code an answer carries: in ``X-Subgate-Error``, or in the API's JSON envelope."""
    if header is None and content_type == "application/json":
        document = json.loads(body)
        if isinstance(document, dict) and isinstance(document.get("error"), dict):
            return str(document["error"]["code"])
    return header


async def send_raw(gateway: Gateway, raw: bytes) -> Answer:
    reader, writer = await asyncio.open_connection(gateway.client.host, gateway.client.port)
    try:
        writer.write(raw)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(65536), 10)
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    fields = (line.split(":", 1) for line in lines)
    headers = {name.lower(): value.strip() for name, value in fields}
    content_type = headers.get("content-type", "").partition(";")[0]
    code = error_code(headers.get("x-subgate-error"), content_type, body)
    return Answer(int(status_line.split(" ", 2)[1]), code, body)


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeAlipay]:
    async with fake_alipay(monkeypatch) as running:
        yield running


@pytest.fixture
async def target(start_gateway: StartGateway, tmp_path: Path, fake: FakeAlipay) -> Target:
    config = hostile_settings(tmp_path, fake.url)
    gateway = await start_gateway(config, credentials=credentials(config))
    stored = signed(trade_fields(notify_id=STORED_NOTIFY_ID))
    target = Target(gateway, fake, stored)
    setup = [
        await send(target, notify(stored)),
        await send(target, report(accepted_report(ONE_TIME), key=STORED_REPORT_KEY)),
        await send(target, message(one_time_body(), key=STORED_SEND_KEY)),
    ]
    # The send is stored either way: sent within the answer (200) or, on a loaded machine, queued
    # with the outcome still to come (202).
    assert [answer.status for answer in setup[:2]] == [200, 200] and setup[2].status in (200, 202)
    return target


# -- requests ---------------------------------------------------------------------------------


def notify(
    fields: dict[str, str] | None = None,
    *,
    app: str | None = None,
    body: bytes | None = None,
    charset: str = "utf-8",
    header_charset: str = "UTF-8",
) -> Request:
    path = "/alipay/notify" if app is None else f"/alipay/notify/{quote(app, safe='')}"
    data = body if body is not None else form_body(fields or {}, charset)
    headers = {"Content-Type": ALIPAY_CONTENT_TYPE.format(charset=header_charset)}
    return Request("POST", path, data, headers)


def json_request(method: str, path: str, body: Any = None, **headers: str) -> Request:
    data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    return Request(method, path, data, {"Content-Type": "application/json", **headers})


def report(body: Any, *, key: str = "hostile-report", user: str = USER) -> Request:
    path = f"/v1/apps/{APP_ID}/users/{quote(user, safe='')}/subscribe-results"
    return json_request("POST", path, body, **{"Idempotency-Key": key})


def message(body: Any, *, key: str = "hostile-send") -> Request:
    return json_request("POST", f"/v1/apps/{APP_ID}/messages", body, **{"Idempotency-Key": key})


def user_path(user: str, rest: str = "") -> str:
    return f"/v1/apps/{APP_ID}/users/{quote(user, safe='')}{rest}"


def raw_with_header(method: str, path: str, header: bytes) -> Request:
    """A request whose header line holds a bare CR (CRLF injection) or a NUL."""
    raw = (
        (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {ADMIN_TOKEN}\r\nContent-Length: 0\r\n"
        ).encode()
        + header
        + b"\r\n\r\n"
    )
    return Request(method, path, raw=raw)


def deep_json(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


# -- the table --------------------------------------------------------------------------------

Build = Callable[[Target], Request]


@dataclass(frozen=True)
class Row:
    build: Build
    status: int
    code: str | None


ROUTES = {
    "notify": "/alipay/notify",
    "notify-app": f"/alipay/notify/{APP_ID}",
    "report": user_path(USER, "/subscribe-results"),
    "consent": user_path(USER, f"/consents/jym_push/{ONE_TIME}"),
    "list": user_path(USER, "/subscriptions"),
    "one": user_path(USER, f"/subscriptions/{ONE_TIME}"),
    "history": user_path(USER, f"/subscriptions/{ONE_TIME}/history"),
    "lookup": f"/v1/apps/{APP_ID}/subscriptions:lookup",
    "send": f"/v1/apps/{APP_ID}/messages",
    "message": f"/v1/apps/{APP_ID}/messages/msg_000000000000000000000000",
    "sync": user_path(USER, "/subscriptions:sync"),
}
METHODS = {"report": "POST", "consent": "PUT", "lookup": "POST", "send": "POST", "sync": "POST"}
METHODS |= {"notify": "POST", "notify-app": "POST"}


def forged(out_trade_no: str) -> dict[str, str]:
    """A notification carrying ``out_trade_no``, signed by a key nobody configured."""
    return signed(trade_fields(out_trade_no=out_trade_no), key=stranger_key())


def _rows_of_a_notification_route(route: str, app: str | None) -> dict[str, Row]:
    def fresh() -> dict[str, str]:
        return signed(trade_fields())

    nested = message_fields(biz_content="[" * 1000 + "]" * 1000)
    return {
        f"{route}-replayed": Row(lambda t: notify(t.stored_notification, app=app), 200, None),
        f"{route}-stale": Row(
            lambda _: notify(signed(trade_fields(when=NOW - timedelta(days=3))), app=app),
            403,
            "stale",
        ),
        f"{route}-truncated": Row(
            lambda _: notify(body=form_body(fresh())[:300], app=app), 400, "malformed"
        ),
        f"{route}-oversized": Row(
            lambda _: notify(signed(trade_fields(subject="x" * MAX_BODY_BYTES)), app=app),
            413,
            "too_large",
        ),
        f"{route}-non-utf8": Row(
            lambda _: notify(body=form_body(fresh()) + b"&x=%FF", app=app), 400, "malformed"
        ),
        f"{route}-duplicate-key": Row(
            lambda _: notify(body=form_body(fresh()) + b"&app_id=" + APP_ID.encode(), app=app),
            400,
            "malformed",
        ),
        f"{route}-wrong-charset": Row(  # says utf-8, is GBK: its subject is not UTF-8
            lambda _: notify(fresh(), app=app, charset="gbk"), 400, "malformed"
        ),
        f"{route}-deeply-nested-forged": Row(
            lambda _: notify(signed(nested, key=stranger_key()), app=app), 403, "bad_signature"
        ),
        f"{route}-sql-in-a-forged-value": Row(
            lambda _: notify(forged(out_trade_no="1'; DROP TABLE notifications;--"), app=app),
            403,
            "bad_signature",
        ),
        f"{route}-nul-in-sign-type": Row(
            lambda _: notify({**fresh(), "sign_type": "RSA2\x00"}, app=app),
            400,
            "malformed",  # a NUL in any field, before the sign type is read
        ),
        f"{route}-confusable-sign-type": Row(
            lambda _: notify({**fresh(), "sign_type": "RSА2"}, app=app),  # a Cyrillic А
            400,
            "unsupported_sign_type",
        ),
        # A notification's connection is the lane's: llhttp refuses it, the code in its header.
        f"{route}-crlf-in-a-header": Row(
            lambda _: raw_with_header("POST", ROUTES[route], b"X-Trace: a\rInjected: 1"),
            400,
            "malformed_request",
        ),
    }


def _rows_of_an_api_route(route: str, path: str) -> dict[str, Row]:
    method = METHODS.get(route, "GET")
    # A connection that starts GET /v1/apps/ is the lookup lane's: llhttp refuses the request,
    # in the API's JSON envelope. Any other is aiohttp's, whose parser answers in plain text.
    unparsed = "malformed_request" if method == "GET" else None
    rows = {
        f"{route}-crlf-in-a-header": Row(
            lambda _: raw_with_header(method, path, b"Idempotency-Key: a\rInjected: 1"),
            400,
            unparsed,
        ),
        f"{route}-nul-in-a-header": Row(
            lambda _: raw_with_header(method, path, b"Idempotency-Key: a\x00b"), 400, unparsed
        ),
        f"{route}-sql-app-in-url": Row(
            lambda _: Request(method, path.replace(APP_ID, quote(SQL, safe=""))),
            404,
            "app_not_found",
        ),
    }
    for name, value in HOSTILE_IDS.items():
        rows |= _hostile_ids_in_the_path(route, method, path, name, value)
    return rows


def _hostile_ids_in_the_path(
    route: str, method: str, path: str, name: str, value: str
) -> dict[str, Row]:
    rows: dict[str, Row] = {}
    hostile = quote(value, safe="")
    if "/users/" in path:
        rows[f"{route}-{name}-user-id"] = Row(
            lambda _: json_request(
                method,
                path.replace(f"/users/{USER}", f"/users/{hostile}"),
                {},
                **{"Idempotency-Key": "k"},
            ),
            422,
            "validation_failed",
        )
    if ONE_TIME in path:
        rows[f"{route}-{name}-template-id"] = Row(
            lambda _: json_request(method, path.replace(ONE_TIME, hostile), {"status": "granted"}),
            422,
            "validation_failed",
        )
    return rows


def _hostile_values(name: str, value: str) -> dict[str, Row]:
    hostile = quote(value, safe="")
    lookup = ROUTES["lookup"]
    return {
        f"notify-app-{name}-app-in-url": Row(
            lambda _: notify(signed(trade_fields()), app=value), 403, "unknown_app"
        ),
        f"message-{name}-message-id": Row(
            lambda _: Request("GET", f"/v1/apps/{APP_ID}/messages/{hostile}"), 404, "not_found"
        ),
        f"sync-{name}-template-id-in-query": Row(
            lambda _: Request(
                "POST", user_path(USER, f"/subscriptions:sync?template_id={hostile}")
            ),
            422,
            "validation_failed",
        ),
        f"one-{name}-channel-in-query": Row(
            lambda _: Request(
                "GET", user_path(USER, f"/subscriptions/{ONE_TIME}?channel={hostile}")
            ),
            422,
            "validation_failed",
        ),
        # A lookup only reads: an id nobody has answers can_send false (a template id is
        # bounded to 64 characters).
        f"lookup-{name}-template-in-body": Row(
            lambda _: json_request("POST", lookup, {"template_id": value, "user_ids": [USER]}),
            *in_a_body(value, *((422, "validation_failed") if value == LONG else (200, None))),
        ),
        f"lookup-{name}-user-in-body": Row(
            lambda _: json_request("POST", lookup, {"template_id": ONE_TIME, "user_ids": [value]}),
            *in_a_body(value, 200, None),
        ),
        f"report-{name}-template-in-the-result": Row(  # the long one, five times, is too large
            lambda _: report(accepted_report(value)),
            *in_a_body(value, *((413, "too_large") if value == LONG else (422, "invalid_report"))),
        ),
        f"send-{name}-recipient": Row(
            lambda _: message(one_time_body(to_user_id=value)),
            *in_a_body(value, 422, "validation_failed"),
        ),
        f"send-{name}-template": Row(
            lambda _: message(one_time_body(template_id=value)),
            *in_a_body(value, 422, "validation_failed"),
        ),
    }


def _notify_rows() -> dict[str, Row]:
    rows = _rows_of_a_notification_route("notify", None)
    rows |= _rows_of_a_notification_route("notify-app", APP_ID)
    rows["notify-foreign-app"] = Row(
        lambda _: notify(signed(trade_fields(SQL))), 403, "unknown_app"
    )
    rows["notify-app-foreign-app"] = Row(
        lambda _: notify(signed(trade_fields(OTHER_APP_ID)), app=APP_ID), 403, "app_mismatch"
    )
    return rows


def _api_rows() -> dict[str, Row]:
    rows: dict[str, Row] = {}
    for route, path in ROUTES.items():
        if not route.startswith("notify"):
            rows |= _rows_of_an_api_route(route, path)
    for name, value in HOSTILE_IDS.items():
        rows |= _hostile_values(name, value)
    rows |= {
        "send-replayed-with-another-body": Row(
            lambda _: message(one_time_body(page="pages/other"), key=STORED_SEND_KEY),
            409,
            "idempotency_conflict",
        ),
        "send-replayed": Row(lambda _: message(one_time_body(), key=STORED_SEND_KEY), 200, None),
        "report-replayed-with-another-body": Row(
            lambda _: report(accepted_report(LONG_TERM), key=STORED_REPORT_KEY),
            409,
            "idempotency_conflict",
        ),
        "send-truncated": Row(lambda _: message(b'{"channel": "mini_'), 400, "invalid_json"),
        "send-oversized": Row(
            lambda _: message(one_time_body(page="p" * MAX_BODY_BYTES)), 413, "too_large"
        ),
        "send-deeply-nested": Row(lambda _: message(deep_json(1000)), 400, "invalid_json"),
        "send-non-utf8": Row(lambda _: message(b'{"channel": "\xff\xfe"}'), 400, "invalid_json"),
        "send-duplicate-key": Row(
            lambda _: message(b'{"channel": "mini_template", "channel": "sms"}'),
            400,
            "invalid_json",
        ),
        "send-wrong-charset": Row(
            lambda _: Request(
                "POST",
                ROUTES["send"],
                json.dumps(one_time_body(), ensure_ascii=False).encode("gb18030"),
                {"Content-Type": "application/json; charset=gb18030", "Idempotency-Key": "k"},
            ),
            400,
            "invalid_json",
        ),
        "send-nul-in-a-keyword": Row(
            lambda _: message(
                one_time_body(
                    data={k: {"value": f"{SQL}\x00{TRAVERSAL}"} for k in TEMPLATES[0]["keywords"]}
                )
            ),
            400,
            "invalid_json",  # no store keeps a NUL in text on every backend
        ),
        "send-no-credit-left": Row(lambda _: message(one_time_body()), 403, "consent_required"),
        "send-long-idempotency-key": Row(
            lambda _: message(one_time_body(), key="k" * 129), 422, "validation_failed"
        ),
        "report-deeply-nested": Row(lambda _: report(deep_json(1000)), 400, "invalid_json"),
        "consent-deeply-nested": Row(
            lambda _: json_request("PUT", ROUTES["consent"], deep_json(1000)), 400, "invalid_json"
        ),
        "lookup-deeply-nested": Row(
            lambda _: json_request("POST", ROUTES["lookup"], deep_json(1000)), 400, "invalid_json"
        ),
    }
    return rows


TABLE = _notify_rows() | _api_rows()


@pytest.mark.parametrize("row", TABLE.values(), ids=TABLE.keys())
async def test_a_hostile_request_gets_its_documented_answer_and_stores_nothing(
    target: Target, row: Row
) -> None:
    request = row.build(target)
    before = target.rows()

    answer = await send(target, request)

    assert (answer.status, answer.code) == (row.status, row.code), answer.body[:300]
    if request.path.startswith("/alipay/notify") and row.code is not None:
        assert answer.body == b"fail"
    if row.code is None and row.status == 400:  # refused by aiohttp's HTTP parser, before us
        assert answer.body.startswith((b"Missing expected LF", b"Invalid header value char"))
    assert target.rows() == before


def test_the_table_reaches_every_route() -> None:
    reached = {route for route in ROUTES if any(name.startswith(f"{route}-") for name in TABLE)}
    assert reached == set(ROUTES)


async def test_a_genuine_notification_with_injection_shaped_values_is_stored_verbatim_once(
    target: Target,
) -> None:
    """Alipay signed it, so it is genuine: its values are data, kept byte for byte."""
    notify_id = f"{SQL}; DROP TABLE notifications;--"
    fields = signed(
        trade_fields(
            notify_id=notify_id, out_trade_no=TRAVERSAL, passback_params=CONFUSABLE + "\r\n"
        )
    )
    before = target.rows()

    answers = [await send(target, notify(fields)) for _ in range(2)]

    assert [(a.status, a.body) for a in answers] == [(200, b"success")] * 2
    after = target.rows()
    assert len(after["notifications"]) == len(before["notifications"]) + 1
    stored = await target.gateway.store.get_notification(APP_ID, notify_id)
    assert stored is not None and stored.fields == fields
    assert stored.raw_body == form_body(fields)


# -- properties (hypothesis) --------------------------------------------------------------------

FORM_TYPES = st.sampled_from(
    [
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=UTF-8",
        "application/x-www-form-urlencoded; text/html; charset=GBK",
        "application/x-www-form-urlencoded; charset=",
        'application/x-www-form-urlencoded; charset="utf-8"',
        "application/x-www-form-urlencoded; charset=latin-1",
        "application/json",
        "text/plain",
        "",
    ]
)
HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
NOTIFY_ANSWERS = {400, 403, 413, 415}


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    body=st.one_of(
        st.binary(max_size=600),
        st.builds(
            lambda pairs: "&".join(f"{k}={v}" for k, v in pairs).encode(),
            st.lists(st.tuples(HEADER_TEXT, HEADER_TEXT), max_size=12),
        ),
    ),
    content_type=st.one_of(FORM_TYPES, HEADER_TEXT),
    app=st.sampled_from([None, APP_ID, OTHER_APP_ID, "x"]),
    extra=st.dictionaries(
        st.sampled_from(["X-Forwarded-For", "Idempotency-Key", "Accept-Charset", "X-Custom"]),
        HEADER_TEXT,
        max_size=3,
    ),
)
async def test_arbitrary_bytes_and_headers_never_get_a_500_and_store_nothing(
    target: Target, body: bytes, content_type: str, app: str | None, extra: dict[str, str]
) -> None:
    path = "/alipay/notify" if app is None else f"/alipay/notify/{app}"
    before = len(target.rows()["notifications"])

    response = await target.gateway.client.post(
        path, data=body, headers={"Content-Type": content_type, **extra}
    )

    assert response.status in NOTIFY_ANSWERS, (response.status, await response.read())
    assert await response.read() == b"fail"
    assert response.headers["X-Subgate-Error"]
    assert len(target.rows()["notifications"]) == before


def signed_content(fields: dict[str, str], rule: str, charset: str) -> bytes:
    """What the signature covers, rebuilt by the official SDK's rules (never ``verify``)."""
    return oracle_content(fields, rule=rule).encode(charset)


BASES = {
    "trade-v1": (signed(trade_fields(notify_id="property-base-trade")), "V1", "utf-8"),
    "life-account-v2": (
        signed(life_account_fields("follow"), rule="V2", charset="gbk"),
        "V2",
        "gbk",
    ),
}
VALUES = st.text(alphabet=st.sampled_from("aA0 +=&%/.,'\"-_:中文支付宝\t"), max_size=30)


@st.composite
def single_field_changes(draw: st.DrawFn) -> tuple[str, dict[str, str], str]:
    """A base notification with exactly one field changed, added or removed."""
    base_name = draw(st.sampled_from(sorted(BASES)))
    base, _, _ = BASES[base_name]
    names = sorted(base)
    kind = draw(st.sampled_from(["replace", "append", "remove", "add", "case"]))
    changed = dict(base)
    if kind == "add":
        name = draw(st.sampled_from(["refund_fee", "extra", "gmt_refund", "sign2", " "]))
        changed[name] = draw(VALUES)
    else:
        name = draw(st.sampled_from(names))
        if kind == "replace":
            changed[name] = draw(VALUES)
        elif kind == "append":
            changed[name] = base[name] + draw(VALUES.filter(bool))
        elif kind == "case":
            changed[name] = base[name].swapcase()
        else:
            del changed[name]
    return base_name, changed, kind


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(change=single_field_changes())
async def test_a_changed_field_of_a_signed_notification_is_refused_unless_no_signed_byte_changed(
    target: Target, change: tuple[str, dict[str, str], str]
) -> None:
    base_name, fields, _ = change
    base, rule, charset = BASES[base_name]
    header = "GBK" if charset == "gbk" else "UTF-8"
    try:
        body = form_body(fields, charset)
    except UnicodeEncodeError:
        return
    before = len(target.rows()["notifications"])

    answer = await send(target, notify(body=body, header_charset=header))

    if answer.status == 200:
        assert signed_content(fields, rule, charset) == signed_content(base, rule, charset)
        assert fields["sign"].strip() == base["sign"] or _same_signature(fields, base)
    else:
        assert answer.status in {400, 403} and answer.body == b"fail"
        assert len(target.rows()["notifications"]) == before


def _same_signature(fields: dict[str, str], base: dict[str, str]) -> bool:
    try:
        return base64.b64decode(fields.get("sign", "")) == base64.b64decode(base["sign"])
    except ValueError:
        return False


# -- schemathesis against the live /openapi.json ------------------------------------------------

EXAMPLES_PER_OPERATION = 25
REAL_PATH_VALUES = {
    "app_id": APP_ID,
    "user_id": USER,
    "template_id": ONE_TIME,
    "channel": "jym_push",
    "message_id": "msg_000000000000000000000000",
}


async def test_schemathesis_finds_no_5xx_and_no_answer_outside_the_document(
    target: Target,
) -> None:
    """Every operation of the live document, fuzzed by schemathesis (positive and negative data,
    with and without real path values), called over HTTP with an all-scopes token."""
    response = await target.gateway.client.get("/openapi.json")
    schema = schemathesis.openapi.from_dict(await response.json())
    base_url = str(target.gateway.client.make_url("")).rstrip("/")
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    failures: list[str] = []
    statuses: dict[int, int] = {}

    def fuzz() -> None:  # runs in a thread: the event loop keeps serving Subgate and the fake
        for result in schema.get_all_operations():
            assert isinstance(result, Ok), result
            operation = result.ok()
            real = {
                name: value
                for name, value in REAL_PATH_VALUES.items()
                if f"{{{name}}}" in operation.path
            }
            strategy = st.one_of(
                operation.as_strategy(),
                operation.as_strategy(path_parameters=real),
                operation.as_strategy(schemathesis.GenerationMode.NEGATIVE, path_parameters=real),
            )

            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=strategy)
            def call(case: Any) -> None:
                answer = case.call(base_url=base_url, headers=auth, timeout=10)
                statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
                try:
                    case.validate_response(
                        answer,
                        checks=[
                            not_a_server_error,
                            status_code_conformance,
                            content_type_conformance,
                            response_schema_conformance,
                        ],
                    )
                except AssertionError as failure:  # schemathesis failures are AssertionErrors
                    failures.append(f"{case.operation.label}: {str(failure)[:600]}")

            call()

    await asyncio.to_thread(fuzz)

    assert failures == []
    assert sum(statuses.values()) >= EXAMPLES_PER_OPERATION * 9 * 0.8
    assert not any(status >= 500 for status in statuses)
    assert {200, 422} <= set(statuses)
