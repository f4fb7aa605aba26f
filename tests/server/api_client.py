"""A small client for the /v1 consent API, realistic callback objects, and looks inside the store.

Everything goes through a real Subgate on 127.0.0.1 (``tests.server.conftest.start_gateway``)
writing a real SQLite file; ``ledger_rows`` reads that file directly to prove what was written.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from multidict import CIMultiDictProxy

from server.credentials import AppCredentials, load_credentials
from server.settings import Settings
from storage import Store
from storage.ledger import fold
from storage.models import ConsentAction, ConsentChannel, ConsentEvent, ConsentSource, ConsentState
from tests.server.conftest import (
    APP_ID,
    NOW,
    OTHER_APP_ID,
    Clock,
    Gateway,
    StartGateway,
    app_config,
    make_settings,
)

USER = "2088102122458832"
OTHER_USER = "2088202882050410"

# Templates registered for APP_ID (ids as the merchant console shows them).
ONE_TIME = "ac768fca1ce245ccae9404bb5243c49b"
LONG_TERM = "9aa357acb7c6434aba294aded1cdfb7c"
SEED_TEMPLATE = "cbc3487d54a648e0b38e334b2b047dd3"  # the id of the two real callback objects
SECOND_ONE_TIME = "0b1fcca882aa435382ae98641e14d37"
UNREGISTERED = "6511999536b14ba5830e3a0289ea69a"

TEMPLATES: list[dict[str, Any]] = [
    {"id": ONE_TIME, "kind": "one_time", "keywords": ["keyword1", "keyword2", "keyword3"]},
    {"id": LONG_TERM, "kind": "long_term", "keywords": ["keyword1", "keyword2"]},
    {"id": SEED_TEMPLATE, "kind": "one_time", "keywords": ["keyword1"]},
    {"id": SECOND_ONE_TIME, "kind": "one_time", "keywords": ["keyword1"], "page": "pages/index"},
]

# Tokens of [[tokens]]: each at least 16 characters.
ADMIN_TOKEN = "admin-token-0123456789abcdef"  # "*": every app, every scope
WRITER_TOKEN = "app-writer-0123456789abcdef"  # APP_ID: read and write
READER_TOKEN = "app-reader-0123456789abcdef"  # APP_ID: read only
OTHER_APP_TOKEN = "other-app-0123456789abcdef"  # OTHER_APP_ID only, every scope
SEND_ONLY_TOKEN = "send-only-0123456789abcdef"  # APP_ID: send only
TOKENS: list[dict[str, Any]] = [
    {"token": ADMIN_TOKEN, "apps": ["*"], "scopes": ["read", "write", "send"]},
    {"token": WRITER_TOKEN, "apps": [APP_ID], "scopes": ["read", "write"]},
    {"token": READER_TOKEN, "apps": [APP_ID], "scopes": ["read"]},
    {"token": OTHER_APP_TOKEN, "apps": [OTHER_APP_ID], "scopes": ["read", "write", "send"]},
    {"token": SEND_ONLY_TOKEN, "apps": [APP_ID], "scopes": ["send"]},
]
ALL_TOKENS = tuple(str(t["token"]) for t in TOKENS)

_keys = itertools.count(1)


def new_key() -> str:
    """A fresh Idempotency-Key."""
    return f"report-{next(_keys):06d}"


def api_settings(tmp_path: Path, **server: Any) -> Settings:
    """Two apps (APP_ID with TEMPLATES, OTHER_APP_ID with none) and the TOKENS above."""
    apps = [app_config(APP_ID, templates=TEMPLATES), app_config(OTHER_APP_ID)]
    return make_settings(tmp_path, apps, tokens=TOKENS, **server)


def success_report(
    *accepted: str,
    rejected: Sequence[str] = (),
    before: Sequence[str] = (),
    show: bool = True,
    keep: bool = False,
    refuse: bool = False,
) -> dict[str, Any]:
    """The success shape of the callback (docs/subscribe-results.md): ``accepted`` newly
    subscribed in this call, ``rejected`` declined, ``before`` subscribed in an earlier call and
    shown again."""
    asked = [*accepted, *rejected, *before]
    return {
        "success": True,
        "stat": "ok",
        "behavior": "subscribe",
        "result": {
            "subscribeEntityIds": asked,
            "subscribedEntityIds": [*before, *accepted],
            "unsubscribedEntityIds": list(rejected),
            "currentSubscribedEntityIds": list(accepted),
        },
        "show": show,
        "keep": keep,
        "refuse": refuse,
        **{template: "accept" for template in (*accepted, *before)},
        **{template: "reject" for template in rejected},
    }


def fail_report(*asked: str, code: int = 11, message: str = "用户取消订阅") -> dict[str, Any]:
    """The fail shape of the callback: it still carries a per-id ``"accept"``."""
    return {
        "success": False,
        "stat": "ok",
        "behavior": "cancel",
        "result": {
            "entityList": list(asked),
            "subscribedEntityIds": [],
            "unsubscribedEntityIds": list(asked),
            "currentSubscribedEntityIds": [],
        },
        "show": True,
        "keep": True,
        "refuse": False,
        "error": code,
        "errorCode": code,
        "errorMessage": message,
        **{template: "accept" for template in asked},
    }


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any  # the decoded JSON, or the text when the answer is not JSON
    headers: CIMultiDictProxy[str]
    text: str

    @property
    def code(self) -> str | None:
        """The error code of an error answer, None for a success."""
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return str(self.body["error"]["code"])
        return None


class Api:
    """The /v1 API of one running gateway, as a mini-program backend would call it."""

    def __init__(self, gateway: Gateway, token: str | None = ADMIN_TOKEN) -> None:
        self.gateway = gateway
        self.token = token

    @property
    def store(self) -> Store:
        return self.gateway.store

    @property
    def clock(self) -> Clock:
        return self.gateway.clock

    def as_token(self, token: str | None) -> Api:
        return Api(self.gateway, token)

    def later(self, **delta: float) -> datetime:
        """Move the gateway's clock forward; return the new now."""
        self.clock.now += timedelta(**delta)
        return self.clock.now

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        params: Mapping[str, str] | None = None,
    ) -> Answer:
        sent: dict[str, str] = {}
        if self.token is not None:
            sent["Authorization"] = f"Bearer {self.token}"
        if json_body is not None:
            data = json.dumps(json_body, ensure_ascii=False).encode("utf-8")
        if data is not None:
            sent["Content-Type"] = content_type
        sent.update(headers or {})
        response = await self.gateway.client.request(
            method, path, data=data, headers=sent, params=params
        )
        text = await response.text()
        try:
            body: Any = json.loads(text)
        except ValueError:
            body = text
        return Answer(response.status, body, response.headers, text)

    async def report(
        self,
        body: Any,
        *,
        user: str = USER,
        key: str | None = None,
        app: str = APP_ID,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        sent = {"Idempotency-Key": key or new_key(), **(headers or {})}
        return await self.request(
            "POST",
            f"/v1/apps/{app}/users/{user}/subscribe-results",
            json_body=body if data is None else None,
            data=data,
            headers=sent,
        )

    async def subscriptions(self, user: str = USER, app: str = APP_ID) -> Answer:
        return await self.request("GET", f"/v1/apps/{app}/users/{user}/subscriptions")

    async def subscription(
        self, template: str, user: str = USER, *, channel: str | None = None, app: str = APP_ID
    ) -> Answer:
        params = {"channel": channel} if channel else None
        path = f"/v1/apps/{app}/users/{user}/subscriptions/{template}"
        return await self.request("GET", path, params=params)

    async def history(
        self, template: str, user: str = USER, *, channel: str | None = None, app: str = APP_ID
    ) -> Answer:
        params = {"channel": channel} if channel else None
        path = f"/v1/apps/{app}/users/{user}/subscriptions/{template}/history"
        return await self.request("GET", path, params=params)

    async def lookup(self, body: Any, app: str = APP_ID) -> Answer:
        return await self.request("POST", f"/v1/apps/{app}/subscriptions:lookup", json_body=body)

    async def put_consent(
        self, channel: str, template: str, body: Any, *, user: str = USER, app: str = APP_ID
    ) -> Answer:
        path = f"/v1/apps/{app}/users/{user}/consents/{channel}/{template}"
        return await self.request("PUT", path, json_body=body)

    async def subscription_of(self, template: str, user: str = USER) -> dict[str, Any]:
        """The mini_template subscription as GET answers it (asserting the GET worked)."""
        answer = await self.subscription(template, user)
        assert answer.status == 200, answer.text
        return dict(answer.body)

    async def assert_projection_is_the_fold(self, app: str = APP_ID) -> list[ConsentState]:
        """Every stored projection of ``app`` equals the fold of its key's log, and every key
        with events has a projection. Returns the states."""
        events = await self.store.consent_events(app)
        users = sorted({event.user_id for event in events})
        keys = {(e.user_id, e.channel, e.template_id) for e in events}
        states: list[ConsentState] = []
        for user in users:
            states.extend(await self.store.consent_states(app, user))
        assert {(s.user_id, s.channel, s.template_id) for s in states} == keys
        for state in states:
            history = await self.store.consent_history(
                app, state.user_id, state.channel, state.template_id
            )
            refolded = fold(
                app, state.user_id, state.channel, state.template_id, [(e, e.id) for e in history]
            )
            assert state == refolded
        return states


_CREDENTIALS: dict[str, dict[str, AppCredentials]] = {}


def api_credentials(settings: Settings) -> dict[str, AppCredentials]:
    """The keys of ``api_settings`` apps, parsed once per process (RSA parsing is slow)."""
    cache_key = settings.server.model_dump_json()
    if cache_key not in _CREDENTIALS:
        _CREDENTIALS[cache_key] = load_credentials(settings, NOW)
    return _CREDENTIALS[cache_key]


async def start_api(
    start_gateway: StartGateway, tmp_path: Path, clock: Clock | None = None, **server: Any
) -> Api:
    """A gateway with ``api_settings`` on a fresh SQLite file, and an admin-token client."""
    settings = api_settings(tmp_path, **server)
    gateway = await start_gateway(settings, clock, credentials=api_credentials(settings))
    return Api(gateway)


LEDGER_TABLES = ("consent_events", "consents", "subscribe_reports", "notifications")


def ledger_rows(gateway: Gateway) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the ledger's tables, read from the database file itself."""
    uri = f"{gateway.db_path.resolve().as_uri()}?mode=ro"
    connection = sqlite3.connect(uri, uri=True)
    try:
        return {
            table: sorted(
                connection.execute(f"SELECT * FROM {table}").fetchall(),  # noqa: S608 (constant)
                key=repr,
            )
            for table in LEDGER_TABLES
        }
    finally:
        connection.close()


# Two callback objects as the mini-program received them (template id SEED_TEMPLATE).
SEED_SUCCESS: dict[str, Any] = {
    "success": True,
    "stat": "ok",
    "behavior": "subscribe",
    "result": {
        "subscribeEntityIds": ["cbc3487d54a648e0b38e334b2b047dd3"],
        "subscribedEntityIds": ["cbc3487d54a648e0b38e334b2b047dd3"],
        "unsubscribedEntityIds": [],
        "currentSubscribedEntityIds": ["cbc3487d54a648e0b38e334b2b047dd3"],
    },
    "show": True,
    "keep": False,
    "refuse": False,
    "cbc3487d54a648e0b38e334b2b047dd3": "accept",
}
SEED_FAIL: dict[str, Any] = {
    "success": False,
    "stat": "ok",
    "behavior": "cancel",
    "result": {
        "entityList": ["cbc3487d54a648e0b38e334b2b047dd3"],
        "subscribedEntityIds": [],
        "unsubscribedEntityIds": ["cbc3487d54a648e0b38e334b2b047dd3"],
        "currentSubscribedEntityIds": [],
    },
    "show": True,
    "keep": True,
    "refuse": False,
    "error": 11,
    "errorCode": 11,
    "errorMessage": "用户取消订阅",
    "cbc3487d54a648e0b38e334b2b047dd3": "accept",
}


def platform_cancel(
    template: str, at: datetime, *, user: str = USER, app: str = APP_ID
) -> ConsentEvent:
    """What reconciliation with subscribe.query appends when a template was unsubscribed."""
    return ConsentEvent(
        app_id=app,
        user_id=user,
        channel=ConsentChannel.MINI_TEMPLATE,
        template_id=template,
        action=ConsentAction.CANCEL,
        occurred_at=at,
        source=ConsentSource.PLATFORM_QUERY,
        evidence=f"query:{template}:{at.isoformat()}",
    )
