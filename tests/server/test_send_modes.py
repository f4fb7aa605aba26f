"""AES content encryption and certificate mode on the request side, checked by the fake with
``cryptography`` and the official SDK; and the fake itself refuses what Alipay would refuse."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import aiohttp
import pytest

from tests.oracle import oracle_sign
from tests.pki import make_cert_set, private_pem_pkcs8, rsa_key
from tests.server.conftest import APP_ID, StartGateway
from tests.server.fake_alipay import (
    SEND_METHOD,
    FakeAlipay,
    encrypted,
    running_fake,
)
from tests.server.send_fixtures import (
    ONE_TIME,
    USER,
    Sending,
    aes_key_base64,
    one_time_body,
    send_settings,
    start_sending,
)


@pytest.fixture
async def aes(start_gateway: StartGateway, tmp_path: Path, fake: FakeAlipay) -> Sending:
    """An app with an ``encrypt_key``; the fake holds the same key."""
    fake.encrypt_key = base64.b64decode(aes_key_base64())
    settings = send_settings(tmp_path, fake, encrypt_key=aes_key_base64())
    env = await start_sending(start_gateway, tmp_path, fake, settings)
    await env.give_credits(1)
    return env


async def test_with_an_encrypt_key_biz_content_is_aes_encrypted_and_signed_as_sent(
    aes: Sending,
) -> None:
    answer = await aes.send(one_time_body())

    assert (answer.status, answer.body["status"]) == (200, "sent")
    [call] = aes.fake.sends
    assert call.params["encrypt_type"] == "AES"
    raw = call.params["biz_content"]
    assert "to_user_id" not in raw and len(base64.b64decode(raw)) % 16 == 0
    assert (call.biz["to_user_id"], call.biz["user_template_id"]) == (USER, ONE_TIME)
    assert json.loads(call.biz["data"])["keyword1"] == {"value": "订单已发货"}


async def test_an_encrypted_signed_answer_is_decrypted_and_accepted(aes: Sending) -> None:
    aes.fake.script(SEND_METHOD, encrypted())

    answer = await aes.send(one_time_body())

    assert (answer.status, answer.body["status"]) == (200, "sent")
    assert answer.body["platform"]["code"] == "10000"
    assert aes.fake.sends[0].reply == "encrypted"
    assert await aes.credits() == 0
    await aes.assert_projection_is_the_fold()


async def test_in_certificate_mode_the_request_carries_both_cert_sns(
    start_gateway: StartGateway, tmp_path: Path, fake: FakeAlipay
) -> None:
    certs = make_cert_set()
    (tmp_path / "alipayCertPublicKey_RSA2.crt").write_bytes(certs.alipay_cert_pem)
    (tmp_path / "alipayRootCert.crt").write_bytes(certs.root_bundle_pem)
    (tmp_path / "appCertPublicKey.crt").write_bytes(certs.app_cert_pem)
    fake.app_public_key = certs.app_leaf_key.public_key()
    fake.alipay_key = certs.alipay_leaf_key
    fake.alipay_cert_sn = certs.alipay_cert_sn  # answers carry it before "sign"
    settings = send_settings(
        tmp_path,
        fake,
        alipay_public_key=None,
        alipay_cert_path="alipayCertPublicKey_RSA2.crt",
        alipay_root_cert_path="alipayRootCert.crt",
        app_cert_path="appCertPublicKey.crt",
        app_private_key=private_pem_pkcs8(certs.app_leaf_key),
    )
    env = await start_sending(start_gateway, tmp_path, fake, settings)
    await env.give_credits(1)

    answer = await env.send(one_time_body())

    assert (answer.status, answer.body["status"]) == (200, "sent")
    [call] = fake.sends
    assert call.params["app_cert_sn"] == certs.app_cert_sn
    assert call.params["alipay_root_cert_sn"] == certs.root_cert_sn
    await env.assert_projection_is_the_fold()


async def test_in_certificate_mode_an_answer_signed_by_the_plain_alipay_key_is_unknown(
    start_gateway: StartGateway, tmp_path: Path, fake: FakeAlipay
) -> None:
    certs = make_cert_set()
    (tmp_path / "alipay.crt").write_bytes(certs.alipay_cert_pem)
    (tmp_path / "root.crt").write_bytes(certs.root_bundle_pem)
    (tmp_path / "app.crt").write_bytes(certs.app_cert_pem)
    fake.app_public_key = certs.app_leaf_key.public_key()  # but answers signed with rsa_key(1)
    settings = send_settings(
        tmp_path,
        fake,
        alipay_public_key=None,
        alipay_cert_path="alipay.crt",
        alipay_root_cert_path="root.crt",
        app_cert_path="app.crt",
        app_private_key=private_pem_pkcs8(certs.app_leaf_key),
    )
    env = await start_sending(start_gateway, tmp_path, fake, settings)
    await env.give_credits(1)

    answer = await env.send(one_time_body())

    assert answer.body["status"] == "unknown"
    assert await env.credits() == 0


async def test_the_fake_refuses_a_request_signed_with_another_key() -> None:
    async with running_fake() as fake:
        fields = {
            "app_id": APP_ID,
            "method": SEND_METHOD,
            "format": "json",
            "charset": "utf-8",
            "timestamp": "2026-11-23 16:00:00",
            "version": "1.0",
            "biz_content": json.dumps({"to_user_id": USER}),
        }
        forged = oracle_sign(fields, rsa_key(3), rule="V2")
        async with aiohttp.ClientSession() as session, session.post(fake.url, data=forged) as r:
            text = await r.text()

        assert fake.calls == []
        assert [refusal.reason for refusal in fake.refused] == [
            "the signature does not verify with the app public key"
        ]
        assert '"error_response":' in text and "isv.invalid-signature" in text


async def test_a_signed_answer_that_cannot_be_decrypted_is_unknown(aes: Sending) -> None:
    aes.fake.script(SEND_METHOD, encrypted(aes_key=bytes(16)))  # not the app's key

    answer = await aes.send(one_time_body())

    assert (answer.status, answer.body.get("status")) == (202, "unknown"), answer.body
    assert answer.body["last_error"]
    assert await aes.credits() == 0  # it may have been delivered: the credit stays spent
    aes.later(3600)
    assert await aes.run_outbox() == 0
    assert len(aes.fake.sends) == 1
    await aes.assert_projection_is_the_fold()
