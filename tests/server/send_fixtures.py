"""Sending, end to end: a real Subgate and a fake Alipay (tests/server/fake_alipay.py), both on
127.0.0.1, over a real SQLite file.

Test modules build their fixtures from ``fake_alipay`` and ``start_sending`` (pytest fixtures
cannot be imported cleanly across modules). The outbox is driven by the test, never by time:
``fake_alipay`` parks each process's background ``OutboxWorker.run_forever`` and the test calls
``Sending.run_outbox()`` (``OutboxWorker.run_once`` of the running process) after moving the
test ``Clock``.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import sqlite3
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from multidict import CIMultiDictProxy

from server.api.keys import SENDER
from server.sending.outbox_worker import OutboxWorker
from server.sending.sender import MessageSender
from server.settings import Settings, settings_from_mapping
from storage import Store
from storage.ledger import fold
from storage.models import ConsentEvent, ConsentState, MessageRecord
from tests.server.conftest import APP_ID, NOW, Clock, Gateway, StartGateway, app_config
from tests.server.fake_alipay import FakeAlipay, running_fake

USER = "2088102122458832"
OTHER_USER = "2088202882050410"
OPEN_ID = "074a1CcTG1LelxKe4xQC0zgNdId0nxi95b5lsNpazWYoCo"

ONE_TIME = "ac768fca1ce245ccae9404bb5243c49b"
LONG_TERM = "9aa357acb7c6434aba294aded1cdfb7c"
THIRD_ONE_TIME = "0b1fcca882aa435382ae98641e14d37"
FOURTH_ONE_TIME = "6511999536b14ba5830e3a0289ea69a"
UNREGISTERED = "f00dfca1ce245ccae9404bb5243c49b0"
TEMPLATES: list[dict[str, Any]] = [
    {"id": ONE_TIME, "kind": "one_time", "keywords": ["keyword1", "keyword2", "keyword3"]},
    {"id": LONG_TERM, "kind": "long_term", "keywords": ["keyword1", "keyword2"]},
    {"id": THIRD_ONE_TIME, "kind": "one_time", "keywords": ["keyword1"], "page": "pages/index"},
    {"id": FOURTH_ONE_TIME, "kind": "one_time", "keywords": ["keyword1"]},
]

TOKEN = "sender-token-0123456789abcdef"
TOKENS: list[dict[str, Any]] = [
    {"token": TOKEN, "apps": ["*"], "scopes": ["read", "write", "send"]}
]

BACKOFF = [1.0, 2.0]  # seconds of the test clock: two retries after the first attempt
LEASE_SECONDS = 30.0
# Long enough for ten calls at once through the fake's pure-Python oracle on a slow machine
# whose host stalls it now and then (0.5 s timed out there); short enough for the tests in which
# the fake hangs until the call times out.
CALL_TIMEOUT_SECONDS = 2.0
OUTBOX: dict[str, Any] = {
    "call_timeout_seconds": CALL_TIMEOUT_SECONDS,
    "retry_backoff_seconds": BACKOFF,
    "lease_seconds": LEASE_SECONDS,
    "poll_seconds": 3600,
    "batch_size": 50,
}

_keys = itertools.count(1)


def new_key(prefix: str = "send") -> str:
    """A fresh Idempotency-Key."""
    return f"{prefix}-{next(_keys):06d}"


def aes_key_base64(seed: int = 7) -> str:
    return base64.b64encode(bytes(range(seed, seed + 16))).decode("ascii")


def send_settings(
    tmp_path: Path, fake: FakeAlipay, apps: list[dict[str, Any]] | None = None, **app: Any
) -> Settings:
    """One app (APP_ID, TEMPLATES, calls go to ``fake``; ``app`` overrides its keys)."""
    config = app_config(APP_ID, **{"templates": TEMPLATES, "gateway_url": fake.url, **app})
    data: dict[str, Any] = {
        "storage": {"url": f"sqlite:///{tmp_path / 'subgate.db'}", "busy_timeout_ms": 200},
        "apps": apps if apps is not None else [config],
        "tokens": TOKENS,
        "outbox": OUTBOX,
    }
    return settings_from_mapping(data, base_dir=tmp_path)


def one_time_body(**overrides: Any) -> dict[str, Any]:
    """A valid send of ONE_TIME to USER; ``overrides`` replace keys (None removes one)."""
    body: dict[str, Any] = {
        "channel": "mini_template",
        "to_user_id": USER,
        "template_id": ONE_TIME,
        "page": "pages/orders/detail?id=20261123001",
        "data": {
            "keyword1": {"value": "订单已发货"},
            "keyword2": {"value": "2026-11-23 16:00"},
            "keyword3": {"value": "SF1234567890"},
        },
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def long_term_body(**overrides: Any) -> dict[str, Any]:
    data = {"keyword1": {"value": "会员积分变动"}, "keyword2": {"value": "+120"}}
    return one_time_body(template_id=LONG_TERM, data=data, page=None, **overrides)


def accepted_report(*templates: str) -> dict[str, Any]:
    """The success shape of the my.requestSubscribeMessage callback: ``templates`` accepted now."""
    return {
        "success": True,
        "stat": "ok",
        "behavior": "subscribe",
        "result": {
            "subscribeEntityIds": list(templates),
            "subscribedEntityIds": list(templates),
            "unsubscribedEntityIds": [],
            "currentSubscribedEntityIds": list(templates),
        },
        "show": True,
        "keep": False,
        "refuse": False,
        **{template: "accept" for template in templates},
    }


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    headers: CIMultiDictProxy[str]

    @property
    def code(self) -> str | None:
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return str(self.body["error"]["code"])
        return None


_NO_KEY = ""


@dataclass
class Sending:
    """One running Subgate (restartable over the same file) and the fake it calls."""

    gateway: Gateway
    fake: FakeAlipay
    start_gateway: StartGateway

    @property
    def store(self) -> Store:
        return self.gateway.store

    @property
    def clock(self) -> Clock:
        return self.gateway.clock

    @property
    def sender(self) -> MessageSender:
        return self.gateway.app[SENDER]

    def later(self, seconds: float) -> datetime:
        self.clock.now += timedelta(seconds=seconds)
        return self.clock.now

    async def run_outbox(self) -> int:
        """One pass of this process's outbox worker; how many messages it attempted."""
        settings = self.gateway.settings.outbox
        return await OutboxWorker(self.store, self.sender, settings, self.clock).run_once()

    async def restart(self, clock: Clock | None = None) -> None:
        """Stop this process and start a new one on the same database file."""
        await self.gateway.client.close()
        self.gateway = await self.start_gateway(self.gateway.settings, clock or self.clock)

    # -- HTTP --------------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        sent = {"Authorization": f"Bearer {TOKEN}", **(headers or {})}
        data = None
        if json_body is not None:
            data = json.dumps(json_body, ensure_ascii=False).encode("utf-8")
            sent["Content-Type"] = "application/json"
        response = await self.gateway.client.request(method, path, data=data, headers=sent)
        text = await response.text()
        try:
            body: Any = json.loads(text)
        except ValueError:
            body = text
        return Answer(response.status, body, response.headers)

    async def send(self, body: Any = None, key: str | None = None, app: str = APP_ID) -> Answer:
        """POST /messages; ``key=""`` sends no Idempotency-Key at all."""
        key = new_key() if key is None else key
        headers = {} if key == _NO_KEY else {"Idempotency-Key": key}
        return await self.request(
            "POST", f"/v1/apps/{app}/messages", one_time_body() if body is None else body, headers
        )

    async def message(self, message_id: str, app: str = APP_ID) -> Answer:
        return await self.request("GET", f"/v1/apps/{app}/messages/{message_id}")

    async def sync(self, user: str = USER, app: str = APP_ID) -> Answer:
        return await self.request("POST", f"/v1/apps/{app}/users/{user}/subscriptions:sync")

    async def accept(self, *templates: str, user: str = USER) -> None:
        """The mini-program reports that ``user`` accepted ``templates`` (one credit each)."""
        answer = await self.request(
            "POST",
            f"/v1/apps/{APP_ID}/users/{user}/subscribe-results",
            accepted_report(*templates),
            {"Idempotency-Key": new_key("report")},
        )
        assert answer.status == 200, answer.body
        assert answer.body["applied"] is True

    async def give_credits(
        self, count: int = 1, template: str = ONE_TIME, user: str = USER
    ) -> None:
        for _ in range(count):
            await self.accept(template, user=user)

    # -- what is stored ----------------------------------------------------------------------

    async def row(self, message_id: str) -> MessageRecord:
        message = await self.store.get_message(APP_ID, message_id)
        assert message is not None
        return message

    def messages(self) -> list[tuple[str, str, str]]:
        """(idempotency_key, status, id) of every message row, read from the file itself."""
        uri = f"{self.gateway.db_path.resolve().as_uri()}?mode=ro"
        connection = sqlite3.connect(uri, uri=True)
        try:
            rows = connection.execute(
                "SELECT idempotency_key, status, id FROM messages ORDER BY created_at, id"
            ).fetchall()
        finally:
            connection.close()
        return [(str(k), str(s), str(i)) for k, s, i in rows]

    async def state(self, template: str = ONE_TIME, user: str = USER) -> ConsentState:
        states = await self.store.consent_states(APP_ID, user, "mini_template", template)
        assert len(states) == 1, f"no projection for {user}/{template}"
        return states[0]

    async def credits(self, template: str = ONE_TIME, user: str = USER) -> int:
        return (await self.state(template, user)).credits

    async def events(self, template: str = ONE_TIME, user: str = USER) -> list[ConsentEvent]:
        events = await self.store.consent_events(APP_ID, user)
        return [e for e in events if e.template_id == template]

    async def actions(self, template: str = ONE_TIME, user: str = USER) -> list[str]:
        """The key's actions in fold order."""
        history = await self.store.consent_history(APP_ID, user, "mini_template", template)
        return [event.action.value for event in history]

    async def assert_projection_is_the_fold(self) -> None:
        """Every stored projection equals the fold of its key's log, and every key has one."""
        events = await self.store.consent_events(APP_ID)
        keys = {(e.user_id, e.channel, e.template_id) for e in events}
        states: list[ConsentState] = []
        for user in sorted({e.user_id for e in events}):
            states.extend(await self.store.consent_states(APP_ID, user))
        assert {(s.user_id, s.channel, s.template_id) for s in states} == keys
        for state in states:
            history = await self.store.consent_history(
                APP_ID, state.user_id, state.channel, state.template_id
            )
            refolded = fold(
                APP_ID,
                state.user_id,
                state.channel,
                state.template_id,
                [(e, e.id) for e in history],
            )
            assert state == refolded


async def _parked(self: OutboxWorker) -> None:
    """Stands in for the background loop: the test drives the outbox with run_once()."""
    await asyncio.Event().wait()


@asynccontextmanager
async def fake_alipay(monkeypatch: pytest.MonkeyPatch, **options: Any) -> AsyncIterator[FakeAlipay]:
    """A running fake; the outbox's background loop is parked while it runs.

    On exit it checks that every request Subgate made verified with the oracle."""
    monkeypatch.setattr(OutboxWorker, "run_forever", _parked)
    async with running_fake(**options) as fake:
        yield fake
        assert fake.refused == [], "Subgate sent a request that does not verify"


async def start_sending(
    start_gateway: StartGateway,
    tmp_path: Path,
    fake: FakeAlipay,
    settings: Settings | None = None,
    clock: Clock | None = None,
) -> Sending:
    settings = settings or send_settings(tmp_path, fake)
    gateway = await start_gateway(settings, clock or Clock(NOW))
    return Sending(gateway, fake, start_gateway)
