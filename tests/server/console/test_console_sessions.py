"""The session book on its own: keys open only their own session, the oldest session makes
room past ``max_sessions``, and the console can be switched off."""

from __future__ import annotations

from pathlib import Path

from server.api.auth import Grant
from server.console.sessions import SessionBook
from server.settings import ConsoleSettings
from tests.server.api_client import api_credentials, api_settings
from tests.server.conftest import Clock, StartGateway

GRANT = Grant(frozenset({"*"}), frozenset({"read"}))


def test_a_key_opens_its_own_session_and_nothing_else() -> None:
    book = SessionBook(ConsoleSettings(), Clock())

    first, second = book.open(GRANT), book.open(GRANT)

    assert first != second and book.find(first) is not book.find(second)
    assert book.find("made-up") is None and book.find(None) is None
    assert book.find(first[:-1]) is None


def test_past_max_sessions_the_oldest_ends() -> None:
    clock = Clock()
    book = SessionBook(ConsoleSettings(max_sessions=2), clock)
    oldest = book.open(GRANT)
    clock.now = clock.now.replace(second=1)
    kept = book.open(GRANT)
    clock.now = clock.now.replace(second=2)

    newest = book.open(GRANT)

    assert len(book) == 2
    assert book.find(oldest) is None
    assert book.find(kept) is not None and book.find(newest) is not None


async def test_a_switched_off_console_is_not_served(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    settings = api_settings(tmp_path)
    settings = settings.model_copy(update={"console": ConsoleSettings(enabled=False)})
    gateway = await start_gateway(settings, credentials=api_credentials(settings))

    answer = await gateway.client.get("/console")

    assert answer.status == 404
