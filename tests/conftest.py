"""Fixtures for the tests at this level that run a gateway in-process (tests/test_secrets.py,
tests/test_hostile_input.py): the ones tests/server/conftest.py defines, re-exported; and the
signal disposition every child process of the run starts with."""

from __future__ import annotations

import signal

import pytest

from tests.server.conftest import start_gateway

__all__ = ["start_gateway"]


def pytest_configure(config: pytest.Config) -> None:
    """Tests stop ``listen`` and ``notifications --tail`` with SIGINT, as a user's Ctrl-C would.
    A run started in the background by a shell without job control inherits SIGINT ignored,
    and an ignored signal stays ignored in every child: those commands would never hear it.
    Handled here instead, SIGINT reaches each child at its default (a handler is not
    inherited), whatever started the run."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
