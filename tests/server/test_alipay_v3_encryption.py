"""v3 content encryption (接口内容加密): an app with an ``encrypt_key`` sends its bodies
AES-encrypted and signed as sent, and reads its answers verified, then decrypted, against a fake
v3 gateway that requires it and checks it with ``cryptography`` itself (tests/server/fake_aes.py).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from server.platforms.alipay_v3 import LABEL_SEND_PATH, AlipayV3Client
from server.platforms.calls import CallOutcome
from tests.pki import rsa_key
from tests.server.fake_alipay_v3 import FakeAlipayV3, V3Reply, v3_error
from tests.server.test_alipay_v3_client import LABEL_SEND, Clock, Ids, credentials, fake
from verify import TrustedKey, VerificationPolicy

AES_KEY = bytes(range(16, 32))
OTHER_AES_KEY = bytes(range(32, 48))
SENT_JSON = json.dumps(LABEL_SEND, ensure_ascii=False, separators=(",", ":"))


def encrypting(url: str, key: bytes | None = AES_KEY) -> Any:
    """The app's credentials with content encryption on (``key``) or off (None)."""
    trusted = (TrustedKey("key:alipay", rsa_key(1).public_key()),)
    return credentials(url, policy=VerificationPolicy(keys=trusted, encrypt_key=key))


@pytest.fixture
async def gateway() -> AsyncIterator[FakeAlipayV3]:
    server = fake(encrypt_key=AES_KEY)
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def client() -> AsyncIterator[AlipayV3Client]:
    async with aiohttp.ClientSession() as session:
        yield AlipayV3Client(session, Clock(), timeout=5.0, new_id=Ids())


async def test_the_body_goes_encrypted_signed_as_sent_and_the_answer_is_decrypted(
    gateway: FakeAlipayV3, client: AlipayV3Client
) -> None:
    gateway.script(V3Reply(body='{"msg_id":"m-1","note":"已受理"}'))

    result = await client.call(encrypting(gateway.url), "POST", LABEL_SEND_PATH, LABEL_SEND)

    assert (result.outcome, result.error, result.node) == (
        CallOutcome.SUCCESS,
        None,
        {"msg_id": "m-1", "note": "已受理"},
    )
    (request,) = gateway.received
    assert request.refused is None  # the fake verified the signature over the ciphertext
    assert request.content == SENT_JSON.encode("utf-8")
    assert b"label_id_list" not in request.body
    assert len(base64.b64decode(request.body, validate=True)) % 16 == 0
    assert request.headers["content-type"].startswith("text/plain")
    assert request.headers["alipay-encrypt-type"] == "AES"
    assert request.headers["alipay-encryption-algm"] == "AES"
    assert request.headers["accept"] == "application/json"


async def test_the_fake_refuses_a_plain_body_for_an_app_that_encrypts(
    gateway: FakeAlipayV3, client: AlipayV3Client
) -> None:
    result = await client.call(encrypting(gateway.url, None), "POST", LABEL_SEND_PATH, LABEL_SEND)

    assert (result.outcome, result.code) == (CallOutcome.REJECTED, "decryption-error")
    assert gateway.received[0].refused == "decryption-error"


async def test_a_body_encrypted_with_another_key_is_refused(
    gateway: FakeAlipayV3, client: AlipayV3Client
) -> None:
    app = encrypting(gateway.url, OTHER_AES_KEY)

    result = await client.call(app, "POST", LABEL_SEND_PATH, LABEL_SEND)

    assert (result.outcome, result.code) == (CallOutcome.REJECTED, "decryption-error")


async def test_an_app_without_encryption_still_sends_plain_json(client: AlipayV3Client) -> None:
    server = fake()
    await server.start()
    try:
        result = await client.call(credentials(server.url), "POST", LABEL_SEND_PATH, LABEL_SEND)
    finally:
        await server.close()

    assert result.outcome is CallOutcome.SUCCESS
    (request,) = server.received
    assert request.body == request.content == SENT_JSON.encode("utf-8")
    assert request.headers["content-type"] == "application/json"
    assert "alipay-encrypt-type" not in request.headers


async def test_a_call_without_a_body_has_nothing_to_encrypt(
    gateway: FakeAlipayV3, client: AlipayV3Client
) -> None:
    result = await client.call(encrypting(gateway.url), "GET", "/v3/alipay/some/query?a=1", None)

    assert (result.outcome, result.node) == (CallOutcome.SUCCESS, {"result": "ok"})
    (request,) = gateway.received
    assert (request.body, request.refused) == (b"", None)
    assert "alipay-encrypt-type" not in request.headers


ANSWERS = [
    # (id, reply, outcome, code, error prefix)
    ("200-plain-json", V3Reply(plain=True), CallOutcome.UNKNOWN, None, "decrypt_failed"),
    ("200-other-key", V3Reply(aes_key=OTHER_AES_KEY), CallOutcome.UNKNOWN, None, "decrypt_failed"),
    ("200-not-json", V3Reply(body="not json"), CallOutcome.UNKNOWN, None, "decrypt_failed"),
    ("200-json-list", V3Reply(body="[1]"), CallOutcome.UNKNOWN, None, "decrypt_failed"),
    ("200-unsigned", V3Reply(signing="none"), CallOutcome.UNKNOWN, None, "bad_signature"),
    ("200-tampered", V3Reply(signing="tampered"), CallOutcome.UNKNOWN, None, "bad_signature"),
    ("200-wrong-key", V3Reply(signing="wrong_key"), CallOutcome.UNKNOWN, None, "bad_signature"),
    ("200-empty", V3Reply(body=""), CallOutcome.SUCCESS, None, None),
    ("204", V3Reply(status=204, body=""), CallOutcome.SUCCESS, None, None),
    (
        "400-plain-error",
        v3_error(400, "LABEL_GROUP_FILTER_EMPTY", "filter 为空"),
        CallOutcome.REJECTED,
        "LABEL_GROUP_FILTER_EMPTY",
        None,
    ),
    (
        "429-plain-error",
        v3_error(429, "app-call-limited", "限流"),
        CallOutcome.THROTTLED,
        "app-call-limited",
        None,
    ),
]


@pytest.mark.parametrize(
    ("reply", "outcome", "code", "error"),
    [case[1:] for case in ANSWERS],
    ids=[case[0] for case in ANSWERS],
)
async def test_every_answer_to_an_encrypted_call_is_verified_then_decrypted(
    gateway: FakeAlipayV3,
    client: AlipayV3Client,
    reply: V3Reply,
    outcome: CallOutcome,
    code: str | None,
    error: str | None,
) -> None:
    gateway.script(reply)

    result = await client.call(encrypting(gateway.url), "POST", LABEL_SEND_PATH, LABEL_SEND)

    assert (result.outcome, result.code) == (outcome, code)
    assert gateway.received[0].refused is None
    if error is None:
        assert result.error is None
    else:
        assert result.error is not None and result.error.startswith(error)


async def test_neither_the_key_nor_the_plain_body_reaches_the_logs(
    gateway: FakeAlipayV3, client: AlipayV3Client, caplog: pytest.LogCaptureFixture
) -> None:
    gateway.script(V3Reply(aes_key=OTHER_AES_KEY), V3Reply())
    caplog.set_level(logging.DEBUG)
    app = encrypting(gateway.url)

    outcomes = [(await client.call(app, "POST", LABEL_SEND_PATH, LABEL_SEND)).outcome for _ in "ab"]

    assert outcomes == [CallOutcome.UNKNOWN, CallOutcome.SUCCESS]
    for secret in [base64.b64encode(AES_KEY).decode(), AES_KEY.hex(), "label_id_list"]:
        assert secret not in caplog.text
    assert repr(AES_KEY) not in repr(app)
