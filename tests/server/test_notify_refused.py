"""Anything but a genuine, fresh, well-formed notification is refused: `fail`, a code, no row.

The table holds one-change mutations of a valid signed notification. Every row checks the HTTP
answer, that the store holds neither a notification nor a consent event, and that the refusal is
counted under the right (app, reason) key: the configured app, or "-" when no configured app
could be resolved (the key space stays bounded whatever a sender puts in a request).
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest

from server.intake.keys import REFUSALS
from server.settings import Settings
from storage import StorageUnavailable
from tests.oracle import form_body
from tests.server.conftest import (
    APP_ID,
    NOW,
    OTHER_APP_ID,
    Gateway,
    StartGateway,
    app_config,
    make_settings,
)
from tests.server.notifications import (
    aes_encrypt,
    life_account_fields,
    life_account_message,
    life_account_xml,
    message_fields,
    post,
    signed,
    stranger_key,
    trade_fields,
)

ENCRYPTED_APP_ID = "2021000000000003"  # require_encryption = true
KEYLESS_APP_ID = "2021000000000004"  # no app_private_key: cannot answer a gateway check
UNKNOWN_APP_ID = "2021000000009999"
MAX_BODY_BYTES = 2048
MAX_AGE = timedelta(seconds=172800)  # notify_max_age_seconds default
MAX_FUTURE = timedelta(seconds=300)  # notify_max_future_seconds default
AES_KEY = secrets.token_bytes(16)
AES_KEY_B64 = base64.b64encode(AES_KEY).decode("ascii")


def table_settings(tmp_path: Path) -> Settings:
    return make_settings(
        tmp_path,
        apps=[
            app_config(APP_ID, encrypt_key=AES_KEY_B64),
            # Only APP_ID answers gateway checks; the others skip the (slow) private-key load.
            app_config(OTHER_APP_ID, app_private_key=None),
            app_config(
                ENCRYPTED_APP_ID,
                encrypt_key=AES_KEY_B64,
                require_encryption=True,
                app_private_key=None,
            ),
            app_config(KEYLESS_APP_ID, app_private_key=None),
        ],
        max_body_bytes=MAX_BODY_BYTES,
    )


@pytest.fixture
async def table_gateway(tmp_path: Path, start_gateway: StartGateway) -> Gateway:
    return await start_gateway(table_settings(tmp_path))


@dataclass(frozen=True)
class Attempt:
    """One request: fields (or raw bytes) and how they are sent."""

    fields: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    charset: str = "utf-8"
    header_charset: str | None = "UTF-8"
    path: str = "/alipay/notify"
    content_type: str | None = None
    send_content_type: bool = True
    chunked: bool = False


async def send(gateway: Gateway, attempt: Attempt) -> tuple[int, str, bytes]:
    return await post(
        gateway.client,
        attempt.fields,
        body=attempt.body,
        charset=attempt.charset,
        header_charset=attempt.header_charset,
        path=attempt.path,
        content_type=attempt.content_type,
        send_content_type=attempt.send_content_type,
        chunked=attempt.chunked,
    )


def trade(app_id: str = APP_ID, **extra: str) -> dict[str, str]:
    return signed({**trade_fields(app_id), **extra})


def changed(fields: dict[str, str], **values: str) -> dict[str, str]:
    return {**fields, **values}


def without(fields: dict[str, str], *names: str) -> dict[str, str]:
    return {k: v for k, v in fields.items() if k not in names}


def life_account(fields: dict[str, str]) -> Attempt:
    signed_fields = signed(fields, rule="V2", charset="gbk")
    return Attempt(signed_fields, charset="gbk", header_charset="GBK")


def oversized() -> dict[str, str]:
    """A valid signature over a body larger than the limit (a huge passback_params)."""
    return trade(passback_params="x" * (2 * MAX_BODY_BYTES))


def tampered_value() -> Attempt:
    return Attempt(changed(trade(), total_amount="100.00"))


def added_field() -> Attempt:
    return Attempt({**trade(), "refund_fee": "0.10"})


def removed_field() -> Attempt:
    return Attempt(without(trade(), "out_trade_no"))


def utf8_value_sent_as_gbk() -> Attempt:
    fields = trade(charset="GBK")  # signed over UTF-8 bytes, declared and sent as GBK
    return Attempt(fields, charset="gbk", header_charset=None)


def stranger_signature() -> Attempt:
    return Attempt(signed(trade_fields(), key=stranger_key()))


def signature_of_another_notification() -> Attempt:
    return Attempt(changed(trade(), sign=trade(out_trade_no="other")["sign"]))


def sign_type_flipped_to_rsa() -> Attempt:
    return Attempt(changed(trade(), sign_type="RSA"))


def sign_type(value: str) -> Callable[[], Attempt]:
    return lambda: Attempt(changed(trade(), sign_type=value))


def missing(name: str) -> Callable[[], Attempt]:
    return lambda: Attempt(without(trade(), name))


def empty_sign() -> Attempt:
    return Attempt(changed(trade(), sign=""))


def truncated_sign() -> Attempt:
    fields = trade()
    return Attempt(changed(fields, sign=fields["sign"][:-8]))


def sign_not_base64() -> Attempt:
    fields = trade()
    return Attempt(changed(fields, sign=fields["sign"][:-4] + "!!!!"))


def unknown_app() -> Attempt:
    return Attempt(signed(trade_fields(UNKNOWN_APP_ID)))


def no_app_named() -> Attempt:
    return Attempt(signed(without(trade_fields(), "app_id", "auth_app_id")))


def notify_time(delta: timedelta) -> Callable[[], Attempt]:
    return lambda: Attempt(signed(trade_fields(when=NOW + delta)))


def utc_timestamp(delta: timedelta) -> Callable[[], Attempt]:
    return lambda: Attempt(signed(message_fields(when=NOW + delta)))


def notify_time_not_a_date() -> Attempt:
    return Attempt(trade(notify_time="2026/11/23 16:00:00"))


def garbage_bytes() -> Attempt:
    return Attempt(body=b"\x00\xff\xfe\x81garbage\r\n\x1a" + secrets.token_bytes(64))


def duplicate_field() -> Attempt:
    return Attempt(body=form_body(trade()) + b"&trade_status=TRADE_CLOSED")


def duplicate_field_same_value() -> Attempt:
    fields = trade()
    return Attempt(body=form_body(fields) + b"&notify_id=" + fields["notify_id"].encode())


def unsupported_charset() -> Attempt:
    return Attempt(trade(charset="ISO-8859-1"))


def bad_percent_escape() -> Attempt:
    body = form_body(trade()).replace(b"out_trade_no=", b"out_trade_no=%zz", 1)
    return Attempt(body=body)


def invalid_utf8_bytes() -> Attempt:
    body = form_body(trade()).replace(b"out_trade_no=", b"out_trade_no=%FF%FE", 1)
    return Attempt(body=body)


def content_type(value: str) -> Callable[[], Attempt]:
    return lambda: Attempt(trade(), content_type=value)


def no_content_type() -> Attempt:
    return Attempt(trade(), send_content_type=False)


def too_large_with_content_length() -> Attempt:
    return Attempt(oversized())


def too_large_chunked() -> Attempt:
    return Attempt(oversized(), chunked=True)


def encrypted(ciphertext: str, app_id: str = APP_ID, encrypt_type: str = "AES") -> Attempt:
    return Attempt(
        signed(message_fields(app_id, biz_content=ciphertext, encrypt_type=encrypt_type))
    )


def aes_not_base64() -> Attempt:
    return encrypted("this is not base64 ciphertext!")


def aes_not_whole_blocks() -> Attempt:
    return encrypted(base64.b64encode(secrets.token_bytes(20)).decode("ascii"))


def aes_v2_encrypt_type() -> Attempt:
    return encrypted(aes_encrypt(AES_KEY, "{}"), encrypt_type="AES_V2")


def aes_for_app_without_key() -> Attempt:
    return encrypted(aes_encrypt(AES_KEY, "{}"), app_id=OTHER_APP_ID)


def plain_for_app_requiring_encryption() -> Attempt:
    return Attempt(signed(message_fields(ENCRYPTED_APP_ID)))


def life_account_malformed_xml() -> Attempt:
    xml = life_account_xml(event="follow").replace("</XML>", "</XM")
    return life_account(life_account_message(xml))


def life_account_xml_entity_bomb() -> Attempt:
    xml = (
        '<!DOCTYPE XML [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        + life_account_xml(event="follow").replace("<MsgType>", "<Note>&b;</Note><MsgType>")
    )
    return life_account(life_account_message(xml))


def life_account_stale() -> Attempt:
    return life_account(life_account_fields("follow", when=NOW - MAX_AGE - timedelta(seconds=1)))


def life_account_follow_without_user() -> Attempt:
    return life_account(life_account_message(life_account_xml(user_id="", event="follow")))


def gateway_check_for_app_without_private_key() -> Attempt:
    return life_account(life_account_fields("verifygw", app_id=KEYLESS_APP_ID))


def url_names_unknown_app() -> Attempt:
    return Attempt(signed(trade_fields(UNKNOWN_APP_ID)), path=f"/alipay/notify/{UNKNOWN_APP_ID}")


def url_and_body_disagree() -> Attempt:
    return Attempt(trade(), path=f"/alipay/notify/{OTHER_APP_ID}")


def url_app_counts_a_malformed_body() -> Attempt:
    return Attempt(body=b"%zz", path=f"/alipay/notify/{OTHER_APP_ID}")


ONE_SECOND = timedelta(seconds=1)

REFUSALS_TABLE = [
    # (mutation, expected status, expected code, counter key app)
    pytest.param(tampered_value, 403, "bad_signature", APP_ID, id="tampered-value"),
    pytest.param(added_field, 403, "bad_signature", APP_ID, id="added-field"),
    pytest.param(removed_field, 403, "bad_signature", APP_ID, id="removed-field"),
    pytest.param(utf8_value_sent_as_gbk, 403, "bad_signature", APP_ID, id="charset-lie"),
    pytest.param(stranger_signature, 403, "bad_signature", APP_ID, id="stranger-key"),
    pytest.param(
        signature_of_another_notification, 403, "bad_signature", APP_ID, id="replayed-signature"
    ),
    pytest.param(sign_type_flipped_to_rsa, 403, "bad_signature", APP_ID, id="rsa2-flipped-to-rsa"),
    pytest.param(sign_type("SM2"), 400, "unsupported_sign_type", APP_ID, id="sign-type-sm2"),
    pytest.param(sign_type("rsa2"), 400, "unsupported_sign_type", APP_ID, id="sign-type-lower"),
    pytest.param(missing("sign_type"), 400, "unsupported_sign_type", APP_ID, id="no-sign-type"),
    pytest.param(missing("sign"), 400, "malformed", APP_ID, id="missing-sign"),
    pytest.param(empty_sign, 400, "malformed", APP_ID, id="empty-sign"),
    pytest.param(truncated_sign, 403, "bad_signature", APP_ID, id="truncated-sign"),
    pytest.param(sign_not_base64, 403, "bad_signature", APP_ID, id="sign-not-base64"),
    pytest.param(unknown_app, 403, "unknown_app", "-", id="app-not-configured"),
    pytest.param(no_app_named, 400, "malformed", "-", id="no-app-id"),
    pytest.param(
        notify_time(-MAX_AGE - ONE_SECOND), 403, "stale", APP_ID, id="notify-time-too-old"
    ),
    pytest.param(
        notify_time(MAX_FUTURE + ONE_SECOND), 403, "stale", APP_ID, id="notify-time-in-future"
    ),
    pytest.param(
        utc_timestamp(-MAX_AGE - ONE_SECOND), 403, "stale", APP_ID, id="utc-timestamp-too-old"
    ),
    pytest.param(
        utc_timestamp(MAX_FUTURE + ONE_SECOND), 403, "stale", APP_ID, id="utc-timestamp-future"
    ),
    pytest.param(notify_time_not_a_date, 400, "malformed", APP_ID, id="notify-time-not-a-date"),
    pytest.param(garbage_bytes, 400, "malformed", "-", id="garbage-bytes"),
    pytest.param(duplicate_field, 400, "malformed", "-", id="duplicate-field"),
    pytest.param(duplicate_field_same_value, 400, "malformed", "-", id="duplicate-same-value"),
    pytest.param(unsupported_charset, 400, "malformed", "-", id="unsupported-charset"),
    pytest.param(bad_percent_escape, 400, "malformed", "-", id="bad-percent-escape"),
    pytest.param(invalid_utf8_bytes, 400, "malformed", "-", id="invalid-utf8"),
    pytest.param(content_type("application/json"), 415, "unsupported_media_type", "-", id="json"),
    pytest.param(
        content_type("multipart/form-data; boundary=x"),
        415,
        "unsupported_media_type",
        "-",
        id="multipart",
    ),
    pytest.param(no_content_type, 415, "unsupported_media_type", "-", id="no-content-type"),
    pytest.param(
        too_large_with_content_length, 413, "too_large", "-", id="too-large-content-length"
    ),
    pytest.param(too_large_chunked, 413, "too_large", "-", id="too-large-chunked"),
    pytest.param(aes_not_base64, 400, "decrypt_failed", APP_ID, id="aes-not-base64"),
    pytest.param(aes_not_whole_blocks, 400, "decrypt_failed", APP_ID, id="aes-partial-block"),
    pytest.param(aes_v2_encrypt_type, 400, "decrypt_failed", APP_ID, id="aes-v2-unsupported"),
    pytest.param(
        aes_for_app_without_key, 400, "decrypt_failed", OTHER_APP_ID, id="aes-app-has-no-key"
    ),
    pytest.param(
        plain_for_app_requiring_encryption,
        400,
        "encryption_required",
        ENCRYPTED_APP_ID,
        id="plain-when-encryption-required",
    ),
    pytest.param(life_account_malformed_xml, 400, "malformed", "-", id="life-account-bad-xml"),
    pytest.param(life_account_xml_entity_bomb, 400, "malformed", "-", id="life-account-entities"),
    pytest.param(life_account_stale, 403, "stale", APP_ID, id="life-account-stale"),
    pytest.param(
        life_account_follow_without_user, 400, "malformed", APP_ID, id="follow-without-user"
    ),
    pytest.param(
        gateway_check_for_app_without_private_key,
        500,
        "app_not_ready",
        KEYLESS_APP_ID,
        id="gateway-check-without-private-key",
    ),
    pytest.param(url_names_unknown_app, 403, "unknown_app", "-", id="url-app-not-configured"),
    pytest.param(url_and_body_disagree, 403, "app_mismatch", OTHER_APP_ID, id="url-body-mismatch"),
    pytest.param(
        url_app_counts_a_malformed_body, 400, "malformed", OTHER_APP_ID, id="url-app-malformed"
    ),
]


@pytest.mark.parametrize(("mutation", "status", "code", "app_key"), REFUSALS_TABLE)
async def test_a_mutated_notification_is_refused_and_leaves_no_trace_but_a_count(
    table_gateway: Gateway,
    mutation: Callable[[], Attempt],
    status: int,
    code: str,
    app_key: str,
) -> None:
    attempt = mutation()

    answer = await send(table_gateway, attempt)

    assert answer == (status, code, b"fail")
    assert await table_gateway.store.count_notifications() == 0
    assert await table_gateway.all_consent_events() == []
    assert table_gateway.refusals() == {(app_key, code): 1}


async def test_the_unmutated_notifications_of_the_table_are_accepted(
    table_gateway: Gateway,
) -> None:
    """The control group: without its one change, each kind of row would have been accepted."""
    accepted = [
        Attempt(trade()),
        Attempt(signed(message_fields(when=NOW - MAX_AGE))),  # exactly max age: still fresh
        Attempt(signed(trade_fields(when=NOW + MAX_FUTURE))),  # exactly max future: still fresh
        encrypted(aes_encrypt(AES_KEY, "{}")),
        encrypted(aes_encrypt(AES_KEY, "{}"), app_id=ENCRYPTED_APP_ID),
        life_account(life_account_fields("follow")),
        life_account(life_account_fields("verifygw")),
        Attempt(trade(OTHER_APP_ID), path=f"/alipay/notify/{OTHER_APP_ID}"),
        Attempt(trade(passback_params="x" * 600), chunked=True),
    ]

    answers = [await send(table_gateway, attempt) for attempt in accepted]

    assert [(status, code) for status, code, _ in answers] == [(200, "")] * len(accepted)
    assert await table_gateway.store.count_notifications() == len(accepted)
    assert table_gateway.refusals() == {}


async def test_flushed_refusal_counts_in_the_store_equal_the_in_memory_totals(
    table_gateway: Gateway,
) -> None:
    mutations = [tampered_value, tampered_value, unknown_app, garbage_bytes, no_content_type]
    mutations += [aes_for_app_without_key, gateway_check_for_app_without_private_key]
    for mutation in mutations:
        await send(table_gateway, mutation())
    counter = table_gateway.app[REFUSALS]

    await counter.flush(table_gateway.store, NOW)
    await counter.flush(table_gateway.store, NOW)  # nothing new: nothing added twice

    stored = await table_gateway.store.refusal_counts()
    assert {(row.app_id, row.reason): row.count for row in stored} == table_gateway.refusals()
    assert table_gateway.refusals() == {
        (APP_ID, "bad_signature"): 2,
        ("-", "unknown_app"): 1,
        ("-", "malformed"): 1,
        ("-", "unsupported_media_type"): 1,
        (OTHER_APP_ID, "decrypt_failed"): 1,
        (KEYLESS_APP_ID, "app_not_ready"): 1,
    }
    assert {row.last_at for row in stored} == {NOW}


async def test_refusals_counted_after_a_flush_are_added_to_the_stored_counts(
    table_gateway: Gateway,
) -> None:
    counter = table_gateway.app[REFUSALS]
    await send(table_gateway, tampered_value())
    await counter.flush(table_gateway.store, NOW)
    await send(table_gateway, tampered_value())
    await send(table_gateway, unknown_app())

    await counter.flush(table_gateway.store, NOW + timedelta(minutes=1))

    stored = {(r.app_id, r.reason): r for r in await table_gateway.store.refusal_counts()}
    assert {key: row.count for key, row in stored.items()} == {
        (APP_ID, "bad_signature"): 2,
        ("-", "unknown_app"): 1,
    }
    assert stored[(APP_ID, "bad_signature")].last_at == NOW + timedelta(minutes=1)


class BusyStore:
    """A store whose refusal write waits for a signal and then fails, as a locked SQLite does."""

    def __init__(self) -> None:
        self.writing = asyncio.Event()
        self.fail_now = asyncio.Event()

    async def add_refusals(self, counts: object, at: object) -> None:
        self.writing.set()
        await self.fail_now.wait()
        raise StorageUnavailable("database is locked")


async def test_a_flush_called_while_a_failing_flush_is_in_progress_still_stores_its_counts(
    table_gateway: Gateway,
) -> None:
    """The periodic flush may be mid-write (and about to fail) when shutdown flushes."""
    await send(table_gateway, tampered_value())
    await send(table_gateway, garbage_bytes())
    counter, busy = table_gateway.app[REFUSALS], BusyStore()
    periodic = asyncio.create_task(counter.flush(busy, NOW))
    await busy.writing.wait()

    final = asyncio.create_task(counter.flush(table_gateway.store, NOW))
    busy.fail_now.set()
    await asyncio.gather(periodic, final)

    stored = await table_gateway.store.refusal_counts()
    assert {(row.app_id, row.reason): row.count for row in stored} == table_gateway.refusals()
    assert table_gateway.refusals() == {(APP_ID, "bad_signature"): 1, ("-", "malformed"): 1}


async def test_refusal_counts_not_yet_flushed_are_stored_when_the_gateway_stops(
    tmp_path: Path, start_gateway: StartGateway
) -> None:
    settings = table_settings(tmp_path)
    first = await start_gateway(settings)
    await send(first, tampered_value())
    await send(first, garbage_bytes())
    await first.client.close()

    second = await start_gateway(settings)

    stored = await second.store.refusal_counts()
    assert {(row.app_id, row.reason): row.count for row in stored} == {
        (APP_ID, "bad_signature"): 1,
        ("-", "malformed"): 1,
    }
    assert second.refusals() == {}


async def test_refusals_for_300_random_unknown_apps_share_one_bounded_counter_key(
    table_gateway: Gateway,
) -> None:
    template = trade()  # the app is resolved before the signature: one signature serves all
    unknown = [f"20219{secrets.randbelow(10**11):011d}" for _ in range(300)]
    attempts = [Attempt(changed(template, app_id=app, auth_app_id=app)) for app in unknown[:150]]
    attempts += [
        Attempt(changed(template, app_id=app, auth_app_id=app), path=f"/alipay/notify/{app}")
        for app in unknown[150:]
    ]

    answers = await asyncio.gather(*(send(table_gateway, attempt) for attempt in attempts))

    assert {answer for answer in answers} == {(403, "unknown_app", b"fail")}
    assert table_gateway.refusals() == {("-", "unknown_app"): 300}
    await table_gateway.app[REFUSALS].flush(table_gateway.store, NOW)
    stored = await table_gateway.store.refusal_counts()
    assert [(row.app_id, row.reason, row.count) for row in stored] == [("-", "unknown_app", 300)]
    assert await table_gateway.stored_nothing()


def padded_to(size: int) -> bytes:
    """A validly signed body of exactly ``size`` bytes: whitespace-only values are not signed."""
    fields = trade()
    fields["passback_params"] = ""
    shortfall = size - len(form_body(fields))
    assert shortfall > 0
    return form_body({**fields, "passback_params": " " * shortfall})


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_body_of_exactly_max_body_bytes_is_accepted_and_one_more_byte_is_not(
    table_gateway: Gateway, chunked: bool
) -> None:
    at_limit, over_limit = padded_to(MAX_BODY_BYTES), padded_to(MAX_BODY_BYTES + 1)
    assert (len(at_limit), len(over_limit)) == (MAX_BODY_BYTES, MAX_BODY_BYTES + 1)

    accepted = await send(table_gateway, Attempt(body=at_limit, chunked=chunked))
    refused = await send(table_gateway, Attempt(body=over_limit, chunked=chunked))

    assert accepted == (200, "", b"success")
    assert refused == (413, "too_large", b"fail")
    assert await table_gateway.store.count_notifications() == 1
    assert table_gateway.refusals() == {("-", "too_large"): 1}
