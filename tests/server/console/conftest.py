"""A Subgate on 127.0.0.1 with two apps and the API's tokens, for the console's tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.server.api_client import api_credentials, api_settings
from tests.server.conftest import Gateway, StartGateway
from tests.server.console.http import Console


@pytest.fixture
async def gateway(start_gateway: StartGateway, tmp_path: Path) -> Gateway:
    settings = api_settings(tmp_path)
    return await start_gateway(settings, credentials=api_credentials(settings))


@pytest.fixture
def console(gateway: Gateway) -> Console:
    return Console(gateway.client)
