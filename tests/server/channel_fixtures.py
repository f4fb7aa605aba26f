"""The channels end to end: a real Subgate over a real SQLite file, with a fake Alipay v3 gateway
(tests/server/fake_alipay_v3.py) and a fake TOP router (tests/server/fake_top.py) on 127.0.0.1.

Both fakes check every request with their own implementation (never ``verify/``) and share the
test's ``Clock`` with Subgate, so moving the clock moves all three. As in ``send_fixtures`` the
outbox's background loop is parked and the test drives it with ``run_outbox()``.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from server.settings import Settings, settings_from_mapping
from tests.oracle import form_body
from tests.pki import rsa_key
from tests.server.conftest import APP_ID, NOW, Clock, StartGateway, app_config
from tests.server.fake_alipay import FakeAlipay
from tests.server.fake_alipay_v3 import FakeAlipayV3, ReceivedV3
from tests.server.fake_top import FakeTop, ReceivedTop
from tests.server.notifications import life_account_fields, signed
from tests.server.send_fixtures import (
    OUTBOX,
    TEMPLATES,
    TOKENS,
    Answer,
    Sending,
    fake_alipay,
    start_sending,
)

TOP_APP = "shop"
TOP_APP_KEY = "12345678"
TOP_SECRET = "top-secret-value-never-logged-0123"
THROTTLE_DELAY = 600.0  # outbox.throttle_delay_seconds (the default)

JYM_USER = 1526984087476772
JYM_TEMPLATE = 1
ACTION = "order_shipped"
RECEIVERS = ["1001", "1002", "1003", "1004"]
FOLLOWER = "2088000000000001"


def label_body(**overrides: Any) -> dict[str, Any]:
    """A valid text label send to the merchant's label 100509."""
    body: dict[str, Any] = {
        "channel": "life_label",
        "filter": {
            "template": "${a}",
            "context": {"a": {"column_name": "label_id_list", "op": "in", "values": ["100509"]}},
        },
        "material": {"msg_type": "text", "text": {"title": "上新", "content": "秋季新品今日上架"}},
    }
    body.update(overrides)
    return body


def jym_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "channel": "jym_push",
        "top_app": TOP_APP,
        "user_id": JYM_USER,
        "template_id": JYM_TEMPLATE,
        "push_content": {
            "title": "订单已发货",
            "content": "您购买的账号已发货 & 可登录",
            "redirect_url": "https://m.jiaoyimao.com/order?id=1&from=push",
            "redirect_url_type": 1,
        },
    }
    body.update(overrides)
    return body


def workcore_body(receivers: list[str] | None = None, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "channel": "workcore_batch",
        "top_app": TOP_APP,
        "action": ACTION,
        "receivers": RECEIVERS if receivers is None else receivers,
        "json_data": {"order": "A-1001", "count": 2},
        "resource_url": "https://work.example.com/orders/A-1001",
        "resource_id": "A-1001",
        "event_type": "account_receiver",
        "source": "iwork",
        "sender": 7,
    }
    body.update(overrides)
    return body


def closed_port_url() -> str:
    """A loopback URL nothing listens on: connecting fails before anything is sent."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def channel_settings(
    tmp_path: Path, classic: FakeAlipay, v3_url: str, top_url: str, **app: Any
) -> Settings:
    config = app_config(
        APP_ID,
        **{"templates": TEMPLATES, "gateway_url": classic.url, "v3_gateway_url": v3_url, **app},
    )
    data: dict[str, Any] = {
        "storage": {"url": f"sqlite:///{tmp_path / 'subgate.db'}", "busy_timeout_ms": 200},
        "apps": [config],
        "tokens": TOKENS,
        "outbox": {**OUTBOX, "throttle_delay_seconds": THROTTLE_DELAY},
        "top_apps": [
            {
                "name": TOP_APP,
                "app_key": TOP_APP_KEY,
                "app_secret": TOP_SECRET,
                "sign_method": "hmac-sha256",
                "gateway_url": top_url,
            }
        ],
    }
    return settings_from_mapping(data, base_dir=tmp_path)


@dataclass
class Channels:
    """One running Subgate (``sending``: restartable over the same file) and the two fakes."""

    sending: Sending
    v3: FakeAlipayV3
    top: FakeTop

    @property
    def clock(self) -> Clock:
        return self.sending.clock

    def later(self, seconds: float) -> datetime:
        return self.sending.later(seconds)

    async def send(self, body: Any, key: str | None = None) -> Answer:
        return await self.sending.send(body, key=key)

    async def message(self, message_id: str) -> Answer:
        return await self.sending.message(message_id)

    async def run_outbox(self) -> int:
        return await self.sending.run_outbox()

    async def restart(self) -> None:
        await self.sending.restart()

    async def consent(
        self, channel: str, template: str, user: str, status: str = "granted"
    ) -> None:
        """Record an opt-in (or its withdrawal) through the API."""
        answer = await self.sending.request(
            "PUT",
            f"/v1/apps/{APP_ID}/users/{user}/consents/{channel}/{template}",
            {"status": status, "evidence": f"form:{user}"},
        )
        assert answer.status == 200, answer.body

    async def life_account_event(self, event: str, user: str, when: datetime) -> None:
        """A signed life-account follow/unfollow posted to the gateway, as Alipay sends it."""
        fields = signed(
            life_account_fields(event, user, when=when), rule="V2", charset="gbk", sign_type="RSA2"
        )
        response = await self.sending.gateway.client.post(
            "/alipay/notify",
            data=form_body(fields, "gbk"),
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=GBK"},
        )
        assert response.status == 200, await response.text()

    def label_calls(self) -> list[ReceivedV3]:
        return [call for call in self.v3.received if call.refused is None]

    def top_calls(self, method: str) -> list[ReceivedTop]:
        return [c for c in self.top.received if c.refused is None and c.params["method"] == method]

    async def ledger(self, channel: str, template: str, user: str) -> list[tuple[str, str]]:
        """(action, evidence) of a ledger key, in fold order."""
        history = await self.sending.store.consent_history(APP_ID, user, channel, template)
        return [(event.action.value, event.evidence) for event in history]

    async def message_count(self) -> int:
        return await self.sending.store.count_messages()

    async def assert_projection_is_the_fold(self) -> None:
        await self.sending.assert_projection_is_the_fold()


@asynccontextmanager
async def running_channels(
    monkeypatch: pytest.MonkeyPatch,
    start_gateway: StartGateway,
    tmp_path: Path,
    *,
    v3_url: str | None = None,
    **app: Any,
) -> AsyncIterator[Channels]:
    """Subgate with both fakes. On exit, after every scenario: every request either fake got had
    verified, and every ledger projection is the fold of its log."""
    clock = Clock(NOW)
    async with fake_alipay(monkeypatch) as classic:
        v3 = FakeAlipayV3(
            app_id=APP_ID,
            app_public_key=rsa_key(2).public_key(),  # app_config's app_private_key
            alipay_private_key=rsa_key(1),  # app_config's alipay_public_key
            other_private_key=rsa_key(3),
            clock=clock,
        )
        top = FakeTop({TOP_APP_KEY: TOP_SECRET}, clock)
        await v3.start()
        await top.start()
        try:
            settings = channel_settings(tmp_path, classic, v3_url or v3.url, top.url, **app)
            sending = await start_sending(start_gateway, tmp_path, classic, settings, clock)
            yield Channels(sending, v3, top)
            await sending.assert_projection_is_the_fold()
            assert [r.refused for r in v3.received if r.refused] == []
            assert [r.refused for r in top.received if r.refused] == []
        finally:
            await v3.close()
            await top.close()
