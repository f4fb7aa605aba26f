"""The send ceiling (``bench/send_ceiling.py``) signs what the fake gateway
(``bench/fake_gateway.py``) verifies, and takes only answers whose signature verifies: both real,
over loopback."""

from __future__ import annotations

import aiohttp
from aiohttp.test_utils import TestServer

from bench.fake_gateway import Gateway, build
from bench.send_ceiling import Sender, run
from tests.pki import rsa_key


async def test_every_send_is_verified_and_counted_by_the_fake_gateway() -> None:
    app_key, alipay_key = rsa_key(0), rsa_key(1)
    gateway = Gateway(app_key.public_key(), alipay_key)
    async with TestServer(build(gateway), host="127.0.0.1") as server:
        url = str(server.make_url("/gateway.do"))
        sender = Sender(url, "2021000000000001", app_key, alipay_key.public_key())
        async with aiohttp.ClientSession() as session:
            result = await run(sender, session, senders=4, seconds=0.2, first=7)

    stats = gateway.stats.as_json()
    assert result["sends"] > 0 and result["failures"] == 0
    assert stats["calls"] == result["sends"] and stats["refused"] == {}
    assert stats["keys_delivered_more_than_once"] == {}  # one user and one key per send
    assert gateway.stats.per_user["2088000000000007"] == 1


async def test_an_answer_signed_by_another_key_is_not_taken() -> None:
    app_key, alipay_key, stranger = rsa_key(0), rsa_key(1), rsa_key(2)
    gateway = Gateway(app_key.public_key(), stranger)  # answers signed with the wrong key
    async with TestServer(build(gateway), host="127.0.0.1") as server:
        url = str(server.make_url("/gateway.do"))
        sender = Sender(url, "2021000000000001", app_key, alipay_key.public_key())
        async with aiohttp.ClientSession() as session:
            taken = await sender.send(session, 1)

    assert taken is False
    assert gateway.stats.calls == 1  # the request itself verified and was counted
