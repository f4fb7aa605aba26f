"""``life_label`` for an app whose content encryption (接口内容加密) is on: through a running
Subgate, each label send reaches the fake v3 gateway AES-encrypted (which the fake requires, and
whose signature it checks over the ciphertext), and its answer is verified, then decrypted."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.server.channel_fixtures import Channels, label_body, running_channels
from tests.server.conftest import StartGateway
from tests.server.fake_alipay_v3 import V3Reply, v3_error
from tests.server.send_fixtures import aes_key_base64
from tests.server.test_channel_life_label import label_key


@pytest.fixture
async def env(
    monkeypatch: pytest.MonkeyPatch, start_gateway: StartGateway, tmp_path: Path
) -> AsyncIterator[Channels]:
    """The app has an ``encrypt_key``; both fakes hold it (the v3 one then requires it)."""
    key = aes_key_base64()
    async with running_channels(monkeypatch, start_gateway, tmp_path, encrypt_key=key) as env:
        env.v3.encrypt_key = env.sending.fake.encrypt_key = base64.b64decode(key)
        yield env


async def test_a_label_send_goes_encrypted_and_its_encrypted_answer_is_accepted(
    env: Channels,
) -> None:
    env.v3.script(V3Reply(body='{"msg_id":"20261123000001"}'))
    body = label_body()

    answer = await env.send(body)

    assert (answer.status, answer.body["status"]) == (200, "sent"), answer.body
    [call] = env.label_calls()
    sent = {"filter": body["filter"], "material": body["material"]}
    assert json.loads(call.content) == sent
    assert b"label_id_list" not in call.body
    assert call.headers["alipay-encrypt-type"] == "AES"
    evidence = f"message:{answer.body['message_id']}"
    assert await env.ledger("life_label", "label_send", label_key(body)) == [("spend", evidence)]


async def test_an_answer_that_does_not_decrypt_leaves_the_send_unknown_never_retried(
    env: Channels,
) -> None:
    env.v3.script(V3Reply(aes_key=bytes(range(40, 56))))

    answer = await env.send(label_body())

    assert (answer.status, answer.body["status"]) == (202, "unknown")
    assert answer.body["last_error"].startswith("decrypt_failed")
    env.later(3600)
    assert await env.run_outbox() == 0
    assert len(env.label_calls()) == 1


async def test_a_plain_refusal_fails_the_send_and_refunds_it(env: Channels) -> None:
    env.v3.script(v3_error(400, "LABEL_GROUP_LABEL_NOT_EXISTS", "标签不存在"))
    body = label_body()

    answer = await env.send(body)

    assert (answer.status, answer.body["status"]) == (200, "failed")
    assert answer.body["platform"]["code"] == "LABEL_GROUP_LABEL_NOT_EXISTS"
    actions = await env.ledger("life_label", "label_send", label_key(body))
    assert [action for action, _ in actions] == ["spend", "refund"]
