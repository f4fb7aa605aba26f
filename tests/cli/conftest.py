"""The running service every operator-command test asks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.cli.operator_service import Running, send
from tests.server.api_client import USER
from tests.server.conftest import APP_ID
from tests.server.fake_alipay import SEND_METHOD, badly_signed, running_fake
from tests.server.send_fixtures import ONE_TIME, accepted_report
from tests.server.subgate_process import SubgateProcess


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    """The service with two credits of ONE_TIME for USER spent: one message ``unknown`` (the
    platform's answer did not verify), one ``sent``."""
    async with running_fake() as fake, aiohttp.ClientSession() as http:
        server = SubgateProcess(tmp_path, fake.url)
        await server.start(http)
        try:
            service = Running(server, fake, http, tmp_path)
            for key in ("report-1", "report-2"):
                path = f"/v1/apps/{APP_ID}/users/{USER}/subscribe-results"
                assert (await service.call("POST", path, accepted_report(ONE_TIME), key))[0] == 200
            fake.script(SEND_METHOD, badly_signed())
            service.messages["unknown"] = await send(service, "send-1")
            service.messages["sent"] = await send(service, "send-2")
            yield service
        finally:
            await server.stop()
            await server.close()
