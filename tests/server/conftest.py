"""Gateway fixtures: real aiohttp servers on 127.0.0.1, real SQLite files, oracle-signed input."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from server.appkeys import STORE
from server.credentials import AppCredentials
from server.intake.keys import REFUSALS
from server.settings import Settings, settings_from_mapping
from server.wiring import build_app
from storage import Store
from storage.models import ConsentEvent
from storage.sqlite.connection import path_from_url
from tests.pki import private_pem_pkcs8, rsa_key, spki_base64
from tests.server.guarded_server import GuardedTestServer
from tests.storage.postgres_env import fresh_schema, server_url

if TYPE_CHECKING:
    from tests.server.fake_alipay import FakeAlipay
    from tests.server.send_fixtures import Sending

APP_ID = "2021000000000001"
OTHER_APP_ID = "2021000000000002"
NOW = datetime(2026, 11, 23, 8, 0, 0, tzinfo=UTC)


@dataclass
class Clock:
    """The gateway's clock, set by the test (never the wall clock)."""

    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Gateway:
    """A running Subgate on loopback plus handles to look inside it."""

    client: TestClient[Any, Any]
    app: web.Application
    settings: Settings
    clock: Clock
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def store(self) -> Store:
        return self.app[STORE]

    def refusals(self) -> dict[tuple[str, str], int]:
        return self.app[REFUSALS].totals()

    @property
    def db_path(self) -> Path:
        """The SQLite file this gateway writes to."""
        return path_from_url(self.settings.storage.url)

    async def all_consent_events(self) -> list[ConsentEvent]:
        """Every consent event stored for any configured app."""
        events: list[ConsentEvent] = []
        for app in self.settings.apps:
            events.extend(await self.store.consent_events(app.app_id))
        return events

    async def stored_nothing(self) -> bool:
        """True when neither a notification nor a consent event has been stored."""
        return await self.store.count_notifications() == 0 and not await self.all_consent_events()


def alipay_key(index: int = 1) -> Any:
    """The stand-in Alipay signing key (index 1); index 2 is the app key, 3+ are strangers."""
    return rsa_key(index)


def app_config(app_id: str = APP_ID, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "app_id": app_id,
        "alipay_public_key": spki_base64(alipay_key().public_key()),
        "app_private_key": private_pem_pkcs8(rsa_key(2)),
        "sign_types": ["RSA2", "RSA"],
    }
    config.update(overrides)
    return {k: v for k, v in config.items() if v is not None}


def make_settings(
    tmp_path: Path,
    apps: list[dict[str, Any]] | None = None,
    *,
    tokens: list[dict[str, Any]] | None = None,
    **server: Any,
) -> Settings:
    """Settings on a SQLite file in ``tmp_path``; ``tokens`` are ``[[tokens]]`` tables."""
    data: dict[str, Any] = {
        "server": server,
        "storage": {"url": f"sqlite:///{tmp_path / 'subgate.db'}", "busy_timeout_ms": 200},
        "apps": apps if apps is not None else [app_config(), app_config(OTHER_APP_ID)],
    }
    if tokens is not None:
        data["tokens"] = tokens
    return settings_from_mapping(data, base_dir=tmp_path)


StartGateway = Callable[..., Awaitable[Gateway]]


@pytest.fixture(params=["sqlite", "postgres"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A store on each backend, for the tests that run on both (a fresh schema on PostgreSQL)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'subgate.db'}"
        return
    async with fresh_schema(server_url()) as url:
        yield url


@pytest.fixture
async def start_gateway(tmp_path: Path) -> AsyncIterator[StartGateway]:
    """Start (and, called again, restart) Subgate on a real port over the same database file."""
    running: list[TestClient[Any, Any]] = []

    async def start(
        settings: Settings | None = None,
        clock: Clock | None = None,
        *,
        credentials: Mapping[str, AppCredentials] | None = None,
    ) -> Gateway:
        """``credentials`` (already loaded from ``settings``) saves parsing the keys again."""
        settings = settings or make_settings(tmp_path)
        clock = clock or Clock()
        app = build_app(settings, clock=clock, credentials=credentials)
        client: TestClient[Any, Any] = TestClient(GuardedTestServer(app, host="127.0.0.1"))
        await client.start_server()
        running.append(client)
        return Gateway(client=client, app=app, settings=settings, clock=clock)

    yield start
    for client in running:
        await client.close()


@pytest.fixture
async def gateway(start_gateway: StartGateway) -> Gateway:
    return await start_gateway()


# Sending through a fake Alipay gateway, for the send test modules. (Imported when used:
# send_fixtures builds on this module's fixtures.)


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeAlipay]:
    """The fake Alipay OpenAPI gateway, with the app's outbound calls pointed at it."""
    from tests.server.send_fixtures import fake_alipay

    async with fake_alipay(monkeypatch) as running:
        yield running


@pytest.fixture
async def env(start_gateway: StartGateway, tmp_path: Path, fake: FakeAlipay) -> Sending:
    """A gateway that sends through ``fake``, with no consent given yet."""
    from tests.server.send_fixtures import start_sending

    return await start_sending(start_gateway, tmp_path, fake)
