"""Every way a genuine notification may arrive is verified, stored as sent, answered `success`.

Each test goes through a real server on 127.0.0.1 and a real SQLite file, signs its input with
the official SDK (tests/oracle.py), and checks the HTTP answer, the stored row and the counters.
"""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

import pytest

from server.appkeys import CREDENTIALS
from server.settings import SettingsError
from server.wiring import build_app
from storage.models import StoredNotification
from tests.oracle import form_body
from tests.pki import foreign_cert_set, make_cert_set, private_pem_pkcs8, rsa_key, spki_base64
from tests.server.conftest import (
    APP_ID,
    OTHER_APP_ID,
    Gateway,
    StartGateway,
    alipay_key,
    app_config,
    make_settings,
)
from tests.server.notifications import (
    aes_encrypt,
    key_label,
    message_fields,
    post,
    signed,
    trade_fields,
)

ALIPAY_KEY_LABEL = key_label(alipay_key().public_key())


async def stored(gateway: Gateway, dedupe_key: str, app_id: str = APP_ID) -> StoredNotification:
    notification = await gateway.store.get_notification(app_id, dedupe_key)
    assert notification is not None, f"{dedupe_key} was not stored"
    return notification


async def test_an_rsa2_v1_trade_notification_is_stored_exactly_as_sent(gateway: Gateway) -> None:
    fields = signed(trade_fields())
    assert fields["passback_params"] == ""  # an empty value travels but is not signed
    assert all(part in fields["subject"] for part in ("语雀", "&", "+", "%20", "="))

    status, code, body = await post(gateway.client, fields)

    assert (status, code, body) == (200, "", b"success")
    row = await stored(gateway, fields["notify_id"])
    assert (row.rule, row.sign_type, row.charset, row.key_label) == (
        "V1",
        "RSA2",
        "utf-8",
        ALIPAY_KEY_LABEL,
    )
    assert row.fields == fields
    assert (row.kind, row.handler) == ("trade_status_sync", "store_only")
    assert row.occurred_at == gateway.clock.now
    assert await gateway.store.count_notifications() == 1
    assert gateway.refusals() == {}


async def test_the_success_answer_is_seven_ascii_bytes_of_text(gateway: Gateway) -> None:
    fields = signed(trade_fields())

    response = await gateway.client.post(
        "/alipay/notify",
        data=form_body(fields),
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )

    assert response.status == 200
    assert await response.read() == b"success"
    assert response.content_type == "text/plain"


async def test_legacy_rsa_sha1_is_accepted_when_the_app_allows_it(gateway: Gateway) -> None:
    fields = signed(trade_fields(), sign_type="RSA")

    status, code, body = await post(gateway.client, fields)

    assert (status, code, body) == (200, "", b"success")
    row = await stored(gateway, fields["notify_id"])
    assert (row.sign_type, row.rule, row.fields) == ("RSA", "V1", fields)


async def test_legacy_rsa_is_refused_for_an_app_that_accepts_only_rsa2(
    tmp_path: Path, start_gateway: StartGateway
) -> None:
    gateway = await start_gateway(
        make_settings(tmp_path, apps=[app_config(APP_ID, sign_types=["RSA2"])])
    )
    fields = signed(trade_fields(), sign_type="RSA")

    status, code, body = await post(gateway.client, fields)

    assert (status, code, body) == (400, "unsupported_sign_type", b"fail")
    assert await gateway.stored_nothing()
    assert gateway.refusals() == {(APP_ID, "unsupported_sign_type"): 1}


async def test_a_v2_signed_message_service_notification_is_stored_with_rule_v2(
    gateway: Gateway,
) -> None:
    fields = signed(message_fields(), rule="V2")

    status, code, body = await post(gateway.client, fields)

    assert (status, code, body) == (200, "", b"success")
    row = await stored(gateway, fields["notify_id"])
    assert (row.rule, row.sign_type, row.charset, row.key_label) == (
        "V2",
        "RSA2",
        "utf-8",
        ALIPAY_KEY_LABEL,
    )
    assert row.fields == fields
    assert row.kind == "alipay.merchant.tradecomplain.changed"
    assert row.occurred_at == gateway.clock.now


@pytest.mark.parametrize(
    ("charset_field", "codec"),
    [("GBK", "gbk"), ("GB18030", "gb18030"), ("gb2312", "gbk")],
    ids=["gbk", "gb18030", "gb2312-read-as-gbk"],
)
async def test_a_chinese_charset_body_without_a_header_charset_is_decoded_by_its_charset_field(
    gateway: Gateway, charset_field: str, codec: str
) -> None:
    fields = signed(
        trade_fields(charset=charset_field, subject="语雀空间 500人规模 & 支付宝"), charset=codec
    )
    body = form_body(fields, codec)
    assert b"%E8" not in body  # really GBK/GB18030 on the wire, not UTF-8

    status, code, answer = await post(gateway.client, fields, body=body, header_charset=None)

    assert (status, code, answer) == (200, "", b"success")
    row = await stored(gateway, fields["notify_id"])
    assert row.fields == fields
    assert (row.charset, row.rule, row.key_label) == (codec, "V1", ALIPAY_KEY_LABEL)
    assert row.raw_body == body


@pytest.mark.parametrize(
    "content_type",
    [
        "application/x-www-form-urlencoded; text/html; charset=UTF-8",
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=utf-8",
        'Application/X-WWW-Form-Urlencoded; charset="UTF-8"',
    ],
    ids=["alipay-odd-header", "no-charset", "standard", "mixed-case-quoted"],
)
async def test_every_form_content_type_alipay_sends_is_accepted(
    gateway: Gateway, content_type: str
) -> None:
    fields = signed(trade_fields())

    status, code, body = await post(gateway.client, fields, content_type=content_type)

    assert (status, code, body) == (200, "", b"success")
    assert (await stored(gateway, fields["notify_id"])).fields == fields


async def test_a_gbk_body_wins_over_a_wrong_utf8_header_charset(gateway: Gateway) -> None:
    fields = signed(trade_fields(charset="GBK"), charset="gbk")

    status, code, body = await post(gateway.client, fields, charset="gbk", header_charset="UTF-8")

    assert (status, code, body) == (200, "", b"success")
    assert (await stored(gateway, fields["notify_id"])).fields["subject"] == fields["subject"]


async def test_during_key_rotation_both_alipay_keys_verify_and_the_label_tells_which(
    tmp_path: Path, start_gateway: StartGateway
) -> None:
    old, new = alipay_key(1), rsa_key(4)
    rotating = app_config(
        APP_ID,
        alipay_public_key=None,
        alipay_public_keys=[spki_base64(old.public_key()), spki_base64(new.public_key())],
    )
    gateway = await start_gateway(make_settings(tmp_path, apps=[rotating]))
    by_old = signed(trade_fields(), key=old)
    by_new = signed(trade_fields(), key=new)

    assert (await post(gateway.client, by_old))[::2] == (200, b"success")
    assert (await post(gateway.client, by_new))[::2] == (200, b"success")

    old_row = await stored(gateway, by_old["notify_id"])
    new_row = await stored(gateway, by_new["notify_id"])
    assert old_row.key_label == key_label(old.public_key())
    assert new_row.key_label == key_label(new.public_key())
    assert old_row.key_label != new_row.key_label
    assert (old_row.fields, new_row.fields) == (by_old, by_new)


async def test_certificate_mode_verifies_with_the_alipay_certificate_key(
    tmp_path: Path, start_gateway: StartGateway
) -> None:
    certs = make_cert_set()
    (tmp_path / "alipayCertPublicKey_RSA2.crt").write_bytes(certs.alipay_cert_pem)
    (tmp_path / "alipayRootCert.crt").write_bytes(certs.root_bundle_pem)
    (tmp_path / "appCertPublicKey.crt").write_bytes(certs.app_cert_pem)
    cert_app = app_config(
        APP_ID,
        alipay_public_key=None,
        alipay_cert_path="alipayCertPublicKey_RSA2.crt",  # relative to the config directory
        alipay_root_cert_path=str(tmp_path / "alipayRootCert.crt"),
        app_cert_path=str(tmp_path / "appCertPublicKey.crt"),
        app_private_key=private_pem_pkcs8(certs.app_leaf_key),
    )
    gateway = await start_gateway(make_settings(tmp_path, apps=[cert_app]))
    fields = signed(trade_fields(), key=certs.alipay_leaf_key)

    status, code, body = await post(gateway.client, fields)

    assert (status, code, body) == (200, "", b"success")
    row = await stored(gateway, fields["notify_id"])
    assert row.key_label == f"cert:{certs.alipay_cert_sn}"
    assert (row.rule, row.fields) == ("V1", fields)
    credentials = gateway.app[CREDENTIALS][APP_ID]
    assert (credentials.app_cert_sn, credentials.alipay_root_cert_sn) == (
        certs.app_cert_sn,
        certs.root_cert_sn,
    )


async def test_certificate_mode_refuses_a_notification_signed_by_the_plain_alipay_key(
    tmp_path: Path, start_gateway: StartGateway
) -> None:
    certs = make_cert_set()
    (tmp_path / "alipay.crt").write_bytes(certs.alipay_cert_pem)
    (tmp_path / "root.crt").write_bytes(certs.root_bundle_pem)
    cert_app = app_config(
        APP_ID,
        alipay_public_key=None,
        alipay_cert_path="alipay.crt",
        alipay_root_cert_path="root.crt",
    )
    gateway = await start_gateway(make_settings(tmp_path, apps=[cert_app]))

    status, code, _ = await post(gateway.client, signed(trade_fields()))

    assert (status, code) == (403, "bad_signature")
    assert await gateway.stored_nothing()
    assert gateway.refusals() == {(APP_ID, "bad_signature"): 1}


@pytest.mark.parametrize(
    "foreign_file", ["alipay_cert_path", "alipay_root_cert_path", "app_cert_path"]
)
def test_a_certificate_from_another_hierarchy_stops_start_up_with_a_clear_error(
    tmp_path: Path, foreign_file: str
) -> None:
    certs, foreign = make_cert_set(), foreign_cert_set()
    files = {
        "alipay_cert_path": certs.alipay_cert_pem,
        "alipay_root_cert_path": certs.root_bundle_pem,
        "app_cert_path": certs.app_cert_pem,
    }
    files[foreign_file] = {
        "alipay_cert_path": foreign.alipay_cert_pem,
        "alipay_root_cert_path": foreign.root_bundle_pem,
        "app_cert_path": foreign.app_cert_pem,
    }[foreign_file]
    for name, pem in files.items():
        (tmp_path / f"{name}.crt").write_bytes(pem)
    cert_app = app_config(
        APP_ID,
        alipay_public_key=None,
        app_private_key=private_pem_pkcs8(certs.app_leaf_key),
        **{name: f"{name}.crt" for name in files},
    )
    settings = make_settings(tmp_path, apps=[cert_app])

    with pytest.raises(SettingsError, match=f"app {APP_ID}: ") as raised:
        build_app(settings)

    assert "BEGIN" not in str(raised.value)  # names the problem, never echoes key material
    assert not (tmp_path / "subgate.db").exists()  # refused before anything was opened


async def test_an_aes_encrypted_notification_is_verified_over_the_ciphertext_and_stored_as_is(
    tmp_path: Path, start_gateway: StartGateway
) -> None:
    aes_key = secrets.token_bytes(16)
    encrypting = app_config(APP_ID, encrypt_key=base64.b64encode(aes_key).decode("ascii"))
    gateway = await start_gateway(make_settings(tmp_path, apps=[encrypting]))
    plaintext = '{"complain_event_id":"2026112300000009","status":"已完结"}'
    ciphertext = aes_encrypt(aes_key, plaintext)
    fields = signed(message_fields(biz_content=ciphertext, encrypt_type="AES"))

    status, code, body = await post(gateway.client, fields)

    assert (status, code, body) == (200, "", b"success")
    row = await stored(gateway, fields["notify_id"])
    assert row.fields == fields
    assert row.fields["biz_content"] == ciphertext
    assert plaintext not in row.raw_body.decode("ascii")


async def test_an_encrypted_notification_is_accepted_by_an_app_that_requires_encryption(
    tmp_path: Path, start_gateway: StartGateway
) -> None:
    aes_key = secrets.token_bytes(16)
    strict = app_config(
        APP_ID, encrypt_key=base64.b64encode(aes_key).decode("ascii"), require_encryption=True
    )
    gateway = await start_gateway(make_settings(tmp_path, apps=[strict]))
    fields = signed(message_fields(biz_content=aes_encrypt(aes_key, "{}"), encrypt_type="AES"))

    assert (await post(gateway.client, fields))[::2] == (200, b"success")
    assert (await stored(gateway, fields["notify_id"])).fields == fields


async def test_the_app_route_accepts_a_notification_for_that_app(gateway: Gateway) -> None:
    fields = signed(trade_fields(OTHER_APP_ID))

    status, code, body = await post(gateway.client, fields, path=f"/alipay/notify/{OTHER_APP_ID}")

    assert (status, code, body) == (200, "", b"success")
    assert (await stored(gateway, fields["notify_id"], OTHER_APP_ID)).fields == fields
    assert await gateway.store.count_notifications(APP_ID) == 0


async def test_the_app_route_refuses_a_body_that_names_another_configured_app(
    gateway: Gateway,
) -> None:
    fields = signed(trade_fields(OTHER_APP_ID))

    status, code, body = await post(gateway.client, fields, path=f"/alipay/notify/{APP_ID}")

    assert (status, code, body) == (403, "app_mismatch", b"fail")
    assert await gateway.stored_nothing()
    assert gateway.refusals() == {(APP_ID, "app_mismatch"): 1}


async def test_the_app_route_refuses_an_app_that_is_not_configured(gateway: Gateway) -> None:
    unknown = "2021000000009999"
    fields = signed(trade_fields(unknown))

    status, code, body = await post(gateway.client, fields, path=f"/alipay/notify/{unknown}")

    assert (status, code, body) == (403, "unknown_app", b"fail")
    assert await gateway.stored_nothing()
    assert gateway.refusals() == {("-", "unknown_app"): 1}


async def test_an_isv_notification_is_routed_to_the_configured_app_among_those_it_names(
    gateway: Gateway,
) -> None:
    fields = signed(trade_fields(APP_ID, auth_app_id="2021000000007777"))

    assert (await post(gateway.client, fields))[::2] == (200, b"success")
    assert (await stored(gateway, fields["notify_id"], APP_ID)).fields == fields
