"""[server] event_loop: uvloop when installed, asyncio on request, a clear error when missing."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
import uvloop

from server.runtime.event_loop import new_event_loop
from server.settings import SettingsError, settings_from_mapping


@pytest.mark.parametrize(
    ("choice", "name", "kind"),
    [("auto", "uvloop", uvloop.Loop), ("uvloop", "uvloop", uvloop.Loop)],
)
def test_uvloop_serves_when_installed(choice: str, name: str, kind: type) -> None:
    loop, loop_name = new_event_loop(choice)  # type: ignore[arg-type]
    try:
        assert (loop_name, isinstance(loop, kind)) == (name, True)
    finally:
        loop.close()


def test_asyncio_on_request() -> None:
    loop, name = new_event_loop("asyncio")
    try:
        assert name == "asyncio" and not isinstance(loop, uvloop.Loop)
    finally:
        loop.close()


def test_auto_falls_back_to_asyncio_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # makes `import uvloop` raise ImportError

    loop, name = new_event_loop("auto")
    try:
        assert name == "asyncio" and isinstance(loop, asyncio.BaseEventLoop)
    finally:
        loop.close()


def test_insisting_on_uvloop_without_it_is_a_settings_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)

    with pytest.raises(SettingsError, match="uvloop is not installed"):
        new_event_loop("uvloop")


def test_an_unknown_event_loop_is_refused_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="event_loop"):
        settings_from_mapping(
            {"server": {"event_loop": "trio"}, "apps": [{"app_id": "2021000000000001"}]},
            base_dir=tmp_path,
        )
