"""Subgate as a real process: ``run.py serve`` on a config file written to tmp, restartable and
killable, for the tests that need a process boundary (SIGKILL, resource limits).

The app's ``gateway_url`` points at a fake Alipay gateway running in the test process, so sends
leave the subprocess for real and are verified (and recorded) by the official SDK.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import socket
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from tests.pki import private_pem_pkcs8, public_pem, rsa_key
from tests.server.conftest import APP_ID
from tests.server.send_fixtures import ONE_TIME

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "process-test-token-0123456789abcdef"
START_TIMEOUT = 20.0


def alive(pid: int) -> bool:
    """Whether a process of ours still exists (a zombie not yet reaped counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(tmp_path: Path, port: int, gateway_url: str) -> Path:
    """One app calling ``gateway_url`` (v3 calls too: nothing leaves loopback), a one-time
    template, one token; keys in files (0600)."""
    (tmp_path / "alipay_public.pem").write_text(public_pem(rsa_key(1).public_key()))
    app_key = tmp_path / "app_private.pem"
    app_key.write_text(private_pem_pkcs8(rsa_key(2)))
    app_key.chmod(0o600)
    config = tmp_path / "subgate.toml"
    config.write_text(
        f"""
[server]
host = "127.0.0.1"
port = {port}
refusal_flush_seconds = 0.5

[storage]
url = "sqlite:///{tmp_path / "subgate.db"}"
synchronous = "FULL"
busy_timeout_ms = 5000

[outbox]
call_timeout_seconds = 2.5
lease_seconds = 3.0
poll_seconds = 0.1
retry_backoff_seconds = [0.2, 0.4]

[[apps]]
app_id = "{APP_ID}"
alipay_public_key = "alipay_public.pem"
app_private_key = "app_private.pem"
sign_types = ["RSA2"]
gateway_url = "{gateway_url}"
v3_gateway_url = "{gateway_url.removesuffix("/gateway.do")}"

[[apps.templates]]
id = "{ONE_TIME}"
kind = "one_time"
keywords = ["keyword1", "keyword2", "keyword3"]

[[tokens]]
token = "{TOKEN}"
apps = ["*"]
scopes = ["read", "write", "send"]
"""
    )
    config.chmod(0o600)
    return config


class SubgateProcess:
    """``run.py serve`` as a subprocess; ``up`` is set while it answers."""

    def __init__(
        self,
        tmp_path: Path,
        gateway_url: str,
        *,
        log_level: str = "INFO",
        open_files: tuple[int, int] | None = None,
    ) -> None:
        """``open_files``: the (soft, hard) RLIMIT_NOFILE it starts with."""
        self.log_level = log_level
        self.open_files = open_files
        self.port = free_port()
        self.config = write_config(tmp_path, self.port, gateway_url)
        self.db = tmp_path / "subgate.db"
        self.log = tmp_path / "subgate.log"
        self.process: asyncio.subprocess.Process | None = None
        self.up = asyncio.Event()
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self, http: aiohttp.ClientSession) -> None:
        """Start it and wait (bounded) until /readyz answers 200."""
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                str(ROOT / "run.py"),
                "--config",
                str(self.config),
                "--log-level",
                self.log_level,
                "serve",
                "--port",
                str(self.port),
                cwd=ROOT,
                stdout=log,
                stderr=log,
                preexec_fn=self._limit_open_files if self.open_files else None,
            )
        self.starts += 1
        end = time.monotonic() + START_TIMEOUT
        while time.monotonic() < end:
            if self.process.returncode is not None:
                pytest.fail(f"Subgate exited early:\n{self.log.read_text(errors='replace')}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with http.get(f"{self.url}/readyz") as answer:
                    if answer.status == 200:
                        self.up.set()
                        return
            await asyncio.sleep(0.05)  # polling readiness, bounded by START_TIMEOUT
        pytest.fail("Subgate did not become ready")

    def _limit_open_files(self) -> None:
        assert self.open_files is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, self.open_files)

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs, nothing is flushed."""
        assert self.process is not None
        self.up.clear()
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self) -> int:
        """A graceful stop (SIGTERM); the exit code."""
        assert self.process is not None
        self.up.clear()
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), 20)

    async def close(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()
