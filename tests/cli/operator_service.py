"""A real Subgate process for the operator commands, with messages in known states, and the
commands themselves run as real processes (``python run.py ...`` and the ``subgate`` script)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.pki import private_pem_pkcs8, rsa_key
from tests.server.conftest import APP_ID
from tests.server.fake_alipay import FakeAlipay
from tests.server.send_fixtures import one_time_body
from tests.server.subgate_process import TOKEN, SubgateProcess

ROOT = Path(__file__).resolve().parents[2]
RUN = (sys.executable, str(ROOT / "run.py"))
SUBGATE = str(Path(sys.executable).parent / "subgate")  # the console script pip installed
COMMAND_TIMEOUT = 30.0


@dataclass(frozen=True)
class Finished:
    """A command's exit status and output."""

    status: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class Running:
    """The service, its fake Alipay, an HTTP session, and the messages it holds by status."""

    server: SubgateProcess
    fake: FakeAlipay
    http: aiohttp.ClientSession
    cwd: Path
    messages: dict[str, str] = field(default_factory=dict)  # status -> message id

    @property
    def url(self) -> str:
        return self.server.url

    async def call(
        self, method: str, path: str, body: object = None, key: str | None = None
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        headers |= {"Idempotency-Key": key} if key else {}
        async with self.http.request(method, self.url + path, json=body, headers=headers) as answer:
            return answer.status, await answer.json()

    async def run(
        self, *args: str, token: str | None = TOKEN, program: tuple[str, ...] = RUN
    ) -> Finished:
        """``python run.py ARGS`` (or ``program``) against this service, to its end."""
        process = await start_command(*args, token=token, program=program, cwd=self.cwd)
        out, err = await asyncio.wait_for(process.communicate(), COMMAND_TIMEOUT)
        assert process.returncode is not None
        return Finished(process.returncode, out.decode(), err.decode())

    async def simulate_trade(self, order: str) -> None:
        """A trade notification for APP_ID, signed with the key the service trusts."""
        key = self.cwd / "alipay_private.pem"
        if not key.exists():
            key.write_text(private_pem_pkcs8(rsa_key(1)))
        url = f"{self.url}/alipay/notify"
        done = await self.run(
            "simulate", "trade", "--app-id", APP_ID, "--alipay-key", str(key), "--url", url
        )
        assert done.status == 0, done.out + done.err


async def start_command(
    *args: str, token: str | None, cwd: Path, program: tuple[str, ...] = RUN
) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUBGATE_")}
    env |= {"SUBGATE_TOKEN": token} if token else {}
    return await asyncio.create_subprocess_exec(
        *program,
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def send(running: Running, key: str) -> str:
    """One send of ONE_TIME to USER, once it has left the outbox's hands; its id."""
    status, answer = await running.call("POST", f"/v1/apps/{APP_ID}/messages", one_time_body(), key)
    assert status in (200, 202), answer
    message_id = str(answer["message_id"])
    async with asyncio.timeout(COMMAND_TIMEOUT):
        while answer["status"] in ("pending", "sending", "queued"):
            await asyncio.sleep(0.05)  # polling the outbox's progress, bounded
            _, answer = await running.call("GET", f"/v1/apps/{APP_ID}/messages/{message_id}")
    return message_id
