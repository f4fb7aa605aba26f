"""The dev sandbox in this process, called by Subgate's real platform clients over loopback.

Each gateway must check what the clients send (a request signed with another key is refused),
answer so that the clients' verification passes (and the official SDK agrees the answer is
signed by the stand-in Alipay key), keep the record of what it delivered, and refuse as the
platform does: a one-time send beyond the user's acceptances, the sixth label send of a week.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from server.credentials import AppCredentials, TopAppCredentials
from server.dev.mode import dev_sandbox, dev_settings
from server.dev.sandbox.platform import SandboxPlatform
from server.dev.sandbox.record import LONG_TERM, ONE_TIME, SandboxRecord
from server.dev.sandbox.service import Sandbox
from server.platforms.alipay_classic import AlipayClient
from server.platforms.alipay_v3 import LABEL_SEND_PATH, AlipayV3Client
from server.platforms.calls import CallOutcome
from server.platforms.top import JYM_APPPUSH_SEND, WORKCORE_BATCH_SEND, TopClient
from server.sending.channels.life_label import ledger_user_id
from tests.oracle import oracle_verify
from tests.pki import rsa_key
from verify import TrustedKey, VerificationPolicy
from verify.openapi import RequestSigner, raw_node_text, signed_request_params
from verify.top import TopSignMethod

APP_ID = "2021000000000001"
USER = "2088000000000001"
SEND = "alipay.open.app.mini.templatemessage.send"
QUERY = "alipay.open.app.messagetemplate.subscribe.query"
TOP_KEY, TOP_SECRET = "12345678", "sandbox-secret"
AES_KEY = bytes(range(16))
LABEL_SEND: dict[str, Any] = {
    "filter": {
        "template": "${a}",
        "context": {"a": {"column_name": "label_id_list", "op": "in", "values": ["100509"]}},
    },
    "material": {"msg_type": "text", "text": {"title": "t", "content": "c"}},
}


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Running:
    sandbox: Sandbox
    record: SandboxRecord
    clock: Clock
    http: aiohttp.ClientSession

    def app(self, **overrides: Any) -> AppCredentials:
        fields: dict[str, Any] = {
            "app_id": APP_ID,
            "policy": VerificationPolicy(keys=(TrustedKey("alipay", rsa_key(1).public_key()),)),
            "app_private_key": rsa_key(2),
            "app_public_key_base64": None,
            "app_cert_sn": None,
            "alipay_root_cert_sn": None,
            "life_account_reply": "ack",
            "gateway_url": self.sandbox.url + "/gateway.do",
            "v3_gateway_url": self.sandbox.url,
            **overrides,
        }
        return AppCredentials(**fields)

    def top_app(self, secret: str = TOP_SECRET) -> TopAppCredentials:
        url = self.sandbox.url + "/router/rest"
        return TopAppCredentials("dev_top", TOP_KEY, secret, TopSignMethod.HMAC_SHA256, url)

    def classic(self) -> AlipayClient:
        return AlipayClient(self.http, self.clock, 5.0)


async def started(record: SandboxRecord, clock: Clock) -> AsyncIterator[Running]:
    platform = SandboxPlatform(
        app_id=APP_ID,
        app_public_key=rsa_key(2).public_key(),
        alipay_private_key=rsa_key(1),
        top_app_key=TOP_KEY,
        top_secret=TOP_SECRET,
        templates={"one": ONE_TIME, "long": LONG_TERM},
        record=record,
        encrypt_key=AES_KEY,
        clock=clock,
    )
    sandbox = Sandbox(platform)
    await sandbox.start()
    try:
        async with aiohttp.ClientSession() as http:
            yield Running(sandbox, record, clock, http)
    finally:
        await sandbox.close()


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    async for each in started(SandboxRecord(tmp_path / "sandbox.json"), Clock()):
        yield each


def template_send(template: str = "one") -> dict[str, str]:
    data = json.dumps({"keyword1": {"value": "到了"}}, ensure_ascii=False)
    return {"to_user_id": USER, "user_template_id": template, "data": data}


async def test_a_one_time_send_takes_one_acceptance_and_is_recorded(running: Running) -> None:
    client, app = running.classic(), running.app()

    before = await client.call(app, SEND, template_send())
    running.record.subscribe(USER, "one", ONE_TIME, accept=True)
    sent = await client.call(app, SEND, template_send())
    again = await client.call(app, SEND, template_send())

    assert (before.outcome, before.sub_code) == (CallOutcome.REJECTED, "SANDBOX_NO_SUBSCRIPTION")
    assert (sent.outcome, sent.code) == (CallOutcome.SUCCESS, "10000")
    assert (again.outcome, again.sub_code) == (CallOutcome.REJECTED, "SANDBOX_NO_SUBSCRIPTION")
    deliveries = running.record.user(USER)["deliveries"]
    assert [(d["channel"], d["template_id"], d["data"]) for d in deliveries] == [
        ("mini_template", "one", {"keyword1": {"value": "到了"}})
    ]


async def test_a_long_term_subscription_allows_sends_until_declined(running: Running) -> None:
    client, app = running.classic(), running.app()
    running.record.subscribe(USER, "long", LONG_TERM, accept=True)

    first = await client.call(app, SEND, template_send("long"))
    second = await client.call(app, SEND, template_send("long"))
    running.record.subscribe(USER, "long", LONG_TERM, accept=False)
    declined = await client.call(app, SEND, template_send("long"))
    unknown = await client.call(app, SEND, template_send("nope"))

    assert [first.outcome, second.outcome] == [CallOutcome.SUCCESS, CallOutcome.SUCCESS]
    assert declined.sub_code == "SANDBOX_NO_SUBSCRIPTION"
    assert unknown.sub_code == "USER_TEMPLATE_ILLEGAL"


async def test_a_call_signed_with_another_key_is_refused(running: Running) -> None:
    running.record.subscribe(USER, "one", ONE_TIME, accept=True)

    result = await running.classic().call(
        running.app(app_private_key=rsa_key(3)), SEND, template_send()
    )

    assert (result.outcome, result.sub_code) == (CallOutcome.REJECTED, "isv.invalid-signature")
    assert running.record.user(USER)["deliveries"] == []


async def test_the_query_answers_what_the_user_subscribed(running: Running) -> None:
    running.record.subscribe(USER, "long", LONG_TERM, accept=True)
    running.record.subscribe(USER, "one", ONE_TIME, accept=False)

    result = await running.classic().call(
        running.app(), QUERY, {"template_id_list": ["one", "long", "other"], "user_id": USER}
    )

    relations = {r["template_id"]: r for r in result.node["subscribe_relations"]}
    assert result.outcome is CallOutcome.SUCCESS
    assert {t: (r["subscribe_state"], r["subscribe_type"]) for t, r in relations.items()} == {
        "one": ("0", "onetime"),
        "long": ("1", "longterm"),
    }


async def test_an_encrypted_call_is_answered_encrypted_and_signed_by_the_alipay_key(
    running: Running,
) -> None:
    """Raw, to see the answer itself: its node is the quoted ciphertext, and the official SDK
    verifies the signature over that text with the stand-in Alipay public key."""
    running.record.subscribe(USER, "one", ONE_TIME, accept=True)
    signer = RequestSigner(APP_ID, rsa_key(2), encrypt_key=AES_KEY)
    form = signed_request_params(signer, SEND, template_send(), running.clock())
    async with running.http.post(running.sandbox.url + "/gateway.do", data=form) as response:
        text = await response.text()

    answer = json.loads(text)
    node = raw_node_text(text, SEND.replace(".", "_") + "_response")
    assert node.startswith('"') and "10000" not in node
    assert oracle_verify(node.encode("utf-8"), answer["sign"], rsa_key(1).public_key())
    keys = (TrustedKey("alipay", rsa_key(1).public_key()),)
    result = await running.classic().call(
        running.app(policy=VerificationPolicy(keys=keys, encrypt_key=AES_KEY)),
        QUERY,
        {"template_id_list": ["one"], "user_id": USER},
    )
    assert result.outcome is CallOutcome.SUCCESS
    assert result.node["subscribe_relations"][0]["template_id"] == "one"


async def test_the_sixth_label_send_of_a_week_is_refused_as_the_platform_refuses_it(
    running: Running,
) -> None:
    client, app = AlipayV3Client(running.http, running.clock, 5.0), running.app()

    results = [await client.call(app, "POST", LABEL_SEND_PATH, LABEL_SEND) for _ in range(6)]
    running.clock.now += timedelta(days=7, seconds=1)
    next_week = await client.call(app, "POST", LABEL_SEND_PATH, LABEL_SEND)

    assert [r.outcome for r in results[:5]] == [CallOutcome.SUCCESS] * 5
    assert (results[5].outcome, results[5].code) == (CallOutcome.THROTTLED, "app-call-limited")
    assert next_week.outcome is CallOutcome.SUCCESS
    audience = ledger_user_id(LABEL_SEND["filter"])
    assert len(running.record.user(audience)["deliveries"]) == 6


async def test_a_label_send_signed_with_another_key_is_refused(running: Running) -> None:
    client = AlipayV3Client(running.http, running.clock, 5.0)

    result = await client.call(
        running.app(app_private_key=rsa_key(3)), "POST", LABEL_SEND_PATH, LABEL_SEND
    )

    assert (result.outcome, result.code) == (CallOutcome.REJECTED, "invalid-signature")


async def test_top_pushes_and_batches_are_delivered_to_each_recipient(running: Running) -> None:
    client = TopClient(running.http, running.clock, 5.0)
    push = {"user_id": 77, "message_id": "m-1", "template_id": 5, "push_content_dto": {"a": 1}}
    batch = {"batch_message_d_t_o": {"action": "remind", "receiver": json.dumps(["u1", "u2"])}}

    pushed = await client.call(running.top_app(), JYM_APPPUSH_SEND, push)
    batched = await client.call(running.top_app(), WORKCORE_BATCH_SEND, batch)
    forged = await client.call(running.top_app("another-secret"), JYM_APPPUSH_SEND, push)

    assert [pushed.outcome, batched.outcome] == [CallOutcome.SUCCESS, CallOutcome.SUCCESS]
    assert (forged.outcome, forged.code) == (CallOutcome.REJECTED, "25")
    assert [d["message_id"] for d in running.record.user("77")["deliveries"]] == ["m-1"]
    for user in ("u1", "u2"):
        assert [d["action"] for d in running.record.user(user)["deliveries"]] == ["remind"]


async def test_the_subscribe_panel_answers_as_the_mini_program_callback(
    running: Running,
) -> None:
    url = f"{running.sandbox.url}/sandbox/users/{USER}/subscribe"
    async with running.http.post(url, json={"template_id": "one"}) as response:
        accepted = await response.json()
    async with running.http.post(url, json={"template_id": "x", "accept": False}) as response:
        invalid = await response.json()
    async with running.http.get(f"{running.sandbox.url}/sandbox/users/{USER}") as response:
        shown = await response.json()

    assert accepted["result"]["currentSubscribedEntityIds"] == ["one"]
    assert accepted["one"] == "accept"
    assert (invalid["success"], invalid["errorCode"]) == (False, 106008)
    assert shown["subscriptions"] == {"one": {"state": "1", "type": "onetime", "credits": 1}}


async def test_a_restarted_sandbox_remembers_its_record(tmp_path: Path) -> None:
    path = tmp_path / "sandbox.json"
    clock = Clock()
    first = SandboxRecord(path)
    first.subscribe(USER, "one", ONE_TIME, accept=True)
    for _ in range(5):
        assert first.take_label_send(APP_ID, clock())

    again = SandboxRecord(path)

    assert again.take_send(USER, "one") and not again.take_send(USER, "one")
    assert not again.take_label_send(APP_ID, clock())
    assert os.stat(path).st_size > 0


async def test_dev_settings_name_no_platform_beyond_loopback(tmp_path: Path) -> None:
    """Before the sandbox is bound and after it points every client at itself."""
    settings = dev_settings(tmp_path)
    sandbox = dev_sandbox(tmp_path, settings)
    configured = sandbox.configure(settings)
    await sandbox.close()

    for each in (settings, configured):
        urls = [url for app in each.apps for url in (app.gateway_url, app.v3_gateway_url)]
        urls += [app.gateway_url for app in each.top_apps]
        assert len(urls) == 3
        assert all(url.startswith("http://127.0.0.1:") for url in urls), urls
    assert configured.apps[0].gateway_url == sandbox.url + "/gateway.do"
    assert configured.top_apps[0].gateway_url == sandbox.url + "/router/rest"
    assert (tmp_path / "dev" / "sandbox_url").read_text().strip() == sandbox.url
