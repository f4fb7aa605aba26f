"""Fixtures for the tests at this level that run a gateway in-process (tests/test_secrets.py,
tests/test_hostile_input.py): the ones tests/server/conftest.py defines, re-exported."""

from tests.server.conftest import start_gateway

__all__ = ["start_gateway"]
