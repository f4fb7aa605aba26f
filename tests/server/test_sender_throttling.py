"""A rate-limited platform answer is retried later, never in a tight loop, through a real store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from server.consent.templates import TemplateRegistry
from server.credentials import AppCredentials
from server.platforms.calls import CallOutcome, CallResult
from server.sending.channels.base import PreparedSend
from server.sending.sender import MessageSender
from server.settings import OutboxSettings
from storage import Store, open_store
from storage.models import (
    ConsentAction,
    ConsentChannel,
    ConsentEvent,
    ConsentSource,
    MessageStatus,
    TemplateKind,
)

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


class ThrottledChannel:
    """A channel whose platform always answers "call limit reached"."""

    name = ConsentChannel.JYM_PUSH.value
    retry_transient = True

    def __init__(self) -> None:
        self.calls = 0

    def prepare(
        self, app_id: str, body: Mapping[str, Any], templates: TemplateRegistry, message_id: str
    ) -> PreparedSend:
        return PreparedSend(user_id="u1", template_id="1", kind=TemplateKind.LONG_TERM, payload={})

    async def deliver(
        self, app: AppCredentials, payload: Mapping[str, Any], recipients: Sequence[str]
    ) -> CallResult:
        self.calls += 1
        return CallResult(CallOutcome.THROTTLED, code="7", msg="App Call Limited")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await open_store(f"sqlite:///{tmp_path / 's.db'}")
    grant = ConsentEvent(
        app_id="app",
        user_id="u1",
        channel=ConsentChannel.JYM_PUSH,
        template_id="1",
        action=ConsentAction.GRANT,
        occurred_at=NOW - timedelta(days=1),
        source=ConsentSource.OPERATOR,
        evidence="signup",
    )
    await store.append_consent_events([grant], NOW)
    yield store
    await store.close()


async def test_a_throttled_send_waits_at_least_the_throttle_delay(store: Store) -> None:
    channel = ThrottledChannel()
    settings = OutboxSettings(retry_backoff_seconds=[1.0, 2.0], throttle_delay_seconds=600)
    credentials: dict[str, Any] = {"app": object()}
    sender = MessageSender(
        store, {channel.name: channel}, credentials, TemplateRegistry([]), settings, lambda: NOW
    )

    view = await sender.send("app", {"channel": channel.name}, "key-1")

    assert view.status is MessageStatus.QUEUED and channel.calls == 1
    assert view.next_attempt_at == NOW + timedelta(seconds=600)
    assert view.platform is not None and view.platform.code == "7"
