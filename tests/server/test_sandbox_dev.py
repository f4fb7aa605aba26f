"""Dev mode as a newcomer meets it: ``run.py`` started in an empty directory, the walk-through's
commands against it, and every connection the service makes watched.

The service runs under an audit hook (``sys.addaudithook``) that writes down every address it
resolves or connects to. It runs on asyncio's own loop here (uvloop connects in C, unseen by
the hook); which loop runs changes no address a client is given. Seeing the sandbox's port in
that log shows the hook sees the platform calls; nothing outside loopback may appear in it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.server.subgate_process import free_port
from tests.test_run import wait_until_listening

ROOT = Path(__file__).resolve().parents[2]
APP = "2021000000000001"
LABEL_SEND = {
    "channel": "life_label",
    "filter": {
        "template": "${a}",
        "context": {"a": {"column_name": "label_id_list", "op": "in", "values": ["100509"]}},
    },
    "material": {"msg_type": "text", "text": {"title": "本周", "content": "上新"}},
}
# Run run.py with an audit hook that logs each resolved and connected address, on asyncio.
WATCHED = """
import runpy, sys
log = open(sys.argv[1], "a", buffering=1)
def hook(event, args):
    if event == "socket.connect":
        log.write("connect %r\\n" % (args[1],))
    elif event == "socket.getaddrinfo":
        log.write("resolve %r\\n" % (args[0],))
sys.addaudithook(hook)
sys.modules["uvloop"] = None
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
LOOPBACK = ("'127.0.0.1'", "'::1'", "'localhost'")


@dataclass
class DevService:
    cwd: Path
    port: int
    audit: Path
    output: Path

    @property
    def token(self) -> str:
        return (self.cwd / "data" / "dev" / "api_token").read_text().strip()

    @property
    def sandbox(self) -> str:
        return (self.cwd / "data" / "dev" / "sandbox_url").read_text().strip()

    def call(self, method: str, path: str, body: Any = None, key: str = "") -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        if key:
            headers["Idempotency-Key"] = key
        data = None if body is None else json.dumps(body).encode()
        url = f"http://127.0.0.1:{self.port}{path}"
        return _open(urllib.request.Request(url, data, headers, method=method))

    def simulate(self, *args: str) -> subprocess.CompletedProcess[str]:
        url = f"http://127.0.0.1:{self.port}/alipay/notify"
        return subprocess.run(
            [sys.executable, str(ROOT / "run.py"), "simulate", *args, "--url", url],
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def platform_record(self, user: str) -> Any:
        url = f"{self.sandbox}/sandbox/users/{user}"
        return _open(urllib.request.Request(url))[1]  # noqa: S310 (the sandbox, on loopback)


def _open(request: urllib.request.Request) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (loopback)
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevService]:
    base = tmp_path_factory.mktemp("newcomer")
    cwd, audit, output = base / "fresh", base / "audit.log", base / "output.log"
    cwd.mkdir()
    port = free_port()
    command = [sys.executable, "-c", WATCHED, str(audit), str(ROOT / "run.py")]
    with output.open("w") as sink:
        process = subprocess.Popen(
            [*command, "serve", "--port", str(port)],
            cwd=cwd,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        wait_until_listening(port, process)
        yield DevService(cwd, port, audit, output)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    assert "PRIVATE KEY" not in output.read_text()


def message_once_settled(dev: DevService, message_id: str) -> Any:
    """The message once it left ``queued``/``sending`` (bounded: the outbox polls each second)."""
    deadline = time.monotonic() + 30
    while True:
        status, message = dev.call("GET", f"/v1/apps/{APP}/messages/{message_id}")
        assert status == 200
        if message["status"] not in ("queued", "sending") or time.monotonic() > deadline:
            return message
        time.sleep(0.1)


def test_a_simulated_subscribe_lets_a_message_go_to_sent_through_the_sandbox(
    dev: DevService,
) -> None:
    user = "2088000000000101"
    send = {
        "channel": "mini_template",
        "to_user_id": user,
        "template_id": "dev_one_time",
        "data": {"keyword1": {"value": "已发货"}, "keyword2": {"value": "明天到"}},
    }

    subscribed = dev.simulate("subscribe", "--user-id", user)
    status, queued = dev.call("POST", f"/v1/apps/{APP}/messages", send, key="first")
    message = message_once_settled(dev, queued["message_id"])
    _, second = dev.call("POST", f"/v1/apps/{APP}/messages", send, key="second")

    assert subscribed.returncode == 0, subscribed.stdout + subscribed.stderr
    assert '"rule": "R5"' in subscribed.stdout  # Subgate took the report as an acceptance
    assert status in (200, 202)  # sent at once, or queued for the outbox
    assert (message["status"], message["platform"]["code"]) == ("sent", "10000")
    assert second["error"]["code"] == "consent_required"  # the one credit was spent
    deliveries = dev.platform_record(user)["deliveries"]
    assert [(d["template_id"], d["data"]["keyword1"]["value"]) for d in deliveries] == [
        ("dev_one_time", "已发货")
    ]


def test_the_sixth_label_send_in_a_week_is_refused(dev: DevService) -> None:
    answers = [
        dev.call("POST", f"/v1/apps/{APP}/messages", LABEL_SEND, key=f"label-{n}") for n in range(6)
    ]

    assert [status in (200, 202) for status, _ in answers] == [True] * 5 + [False]
    assert answers[5][0] == 429
    assert answers[5][1]["error"]["code"] == "weekly_limit"
    sent = [message_once_settled(dev, body["message_id"])["status"] for _, body in answers[:5]]
    assert sent == ["sent"] * 5
    audience = answers[0][1]["user_id"]
    assert len(dev.platform_record(audience)["deliveries"]) == 5


def test_sync_against_the_sandbox_changes_the_ledger(dev: DevService) -> None:
    user = "2088000000000202"
    subscription = f"/v1/apps/{APP}/users/{user}/subscriptions/dev_long_term"
    sync = f"/v1/apps/{APP}/users/{user}/subscriptions:sync"

    unreported = dev.simulate(
        "subscribe", "--user-id", user, "--template", "dev_long_term", "--no-report"
    )
    _, before = dev.call("GET", subscription)
    _, accepted = dev.call("POST", sync)
    dev.simulate(
        "subscribe", "--user-id", user, "--template", "dev_long_term", "--reject", "--no-report"
    )
    _, cancelled = dev.call("POST", sync)
    _, after = dev.call("GET", subscription)

    assert unreported.returncode == 0 and "subscribe-results" not in unreported.stdout
    assert before["can_send"] is False
    assert accepted["changes"] == [{"template_id": "dev_long_term", "action": "accept"}]
    assert cancelled["changes"] == [{"template_id": "dev_long_term", "action": "cancel"}]
    assert (after["can_send"], after["last_source"]) == (False, "platform_query")


def test_nothing_but_loopback_is_ever_contacted(dev: DevService) -> None:
    """Whatever else ran before in this module; a sync makes one platform call at least."""
    status, _ = dev.call("POST", f"/v1/apps/{APP}/users/2088000000000303/subscriptions:sync")
    sandbox_port = dev.sandbox.rsplit(":", 1)[1]
    lines = dev.audit.read_text().splitlines()

    assert status == 200

    assert any(line.startswith("connect") and sandbox_port in line for line in lines)
    assert [line for line in lines if not any(host in line for host in LOOPBACK)] == []


def test_the_banner_says_it_is_a_sandbox_and_where_it_listens(dev: DevService) -> None:
    banner = dev.output.read_text()

    assert "a sandbox, nothing reaches a real platform" in banner
    assert f"Sandbox platform:       {dev.sandbox}" in banner
    assert "with the asyncio event loop" in banner  # the one the audit hook can watch
