"""What an operator meets when start-up cannot go on, and what a log collector reads: each
friendly failure is one line saying what and where, exit status 1, no traceback; with
``--log-format json`` every line of the log is a JSON object, with no secret in it. Real
processes throughout (``run.py``, as an operator starts it)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.pki import public_pem, rsa_key
from tests.server.subgate_process import free_port

ROOT = Path(__file__).resolve().parent.parent
RUN = [sys.executable, str(ROOT / "run.py")]
APP = "2021000000000001"


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RUN, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def config(tmp_path: Path, storage_url: str | None = None, extra: str = "") -> Path:
    """A config of one app whose Alipay key is in a file; ``extra`` is appended as it is."""
    (tmp_path / "alipay.pem").write_text(public_pem(rsa_key(1).public_key()))
    url = storage_url or f"sqlite:///{tmp_path / 'subgate.db'}"
    path = tmp_path / "subgate.toml"
    path.write_text(
        f'[storage]\nurl = "{url}"\n\n[[apps]]\napp_id = "{APP}"\n'
        f'alipay_public_key = "alipay.pem"\n{extra}'
    )
    path.chmod(0o600)
    return path


def failure_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line the failure printed, once it is sure nothing else failed loudly."""
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr.splitlines()[-1]


def test_a_taken_port_is_one_line_naming_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = run(tmp_path, "serve", "--port", str(port))

    assert failure_line(result) == (
        f"subgate serve: cannot listen on 127.0.0.1:{port}: Address already in use"
    )


def test_an_unreadable_key_file_is_one_line_naming_the_app_and_the_key(tmp_path: Path) -> None:
    path = config(tmp_path, extra='app_private_key = "/nowhere/app_private_key.pem"\n')

    result = run(tmp_path, "--config", str(path), "serve", "--port", str(free_port()))

    line = failure_line(result)
    assert line.startswith(f"subgate serve: app {APP}: app_private_key ")
    assert "readable file" in line


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///{tmp}/a-file/subgate.db", "cannot open the store sqlite:///{tmp}/a-file/"),
        ("postgresql://subgate:hunter2@127.0.0.1:{port}/subgate",
         "cannot open the store postgresql://subgate:***@127.0.0.1:{port}/subgate: "
         "cannot reach PostgreSQL"),
        ("mysql://subgate:hunter2@db/subgate",
         "config {config}: storage.url: must be sqlite:///path/to/file.db or postgresql://"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("command", ["serve", "migrate"])
def test_a_bad_database_url_is_one_line_without_its_password(
    tmp_path: Path, url: str, expected: str, command: str
) -> None:
    port = free_port()  # nothing listens there
    (tmp_path / "a-file").write_text("a file, not a directory")
    path = config(tmp_path, url.format(port=port, tmp=tmp_path))

    result = run(tmp_path, "--config", str(path), command)

    line = failure_line(result)
    assert line.startswith(
        f"subgate {command}: " + expected.format(port=port, config=path, tmp=tmp_path)
    )
    assert "hunter2" not in result.stderr


def test_a_config_typo_is_one_line_naming_the_file_and_the_key(tmp_path: Path) -> None:
    path = config(tmp_path, extra="\n[server]\nprot = 8081\n")

    result = run(tmp_path, "--config", str(path))

    assert failure_line(result) == (
        f"subgate serve: config {path}: server.prot: unknown key (a typo?)"
    )


def test_a_typo_in_a_variable_is_refused_the_same_way(tmp_path: Path) -> None:
    path = config(tmp_path)

    result = subprocess.run(
        [*RUN, "--config", str(path), "migrate"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "SUBGATE_STORAGE__SYNCHRONUS": "NORMAL"},
    )

    assert failure_line(result) == (
        f"subgate migrate: config {path}: storage.synchronus: unknown key (a typo?)"
    )


def test_json_logs_parse_line_by_line_and_hold_no_secret(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [*RUN, "--log-format", "json", "--log-level", "DEBUG", "serve", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port(port, process)
        token = (tmp_path / "data" / "dev" / "api_token").read_text().strip()
        simulated = run(
            tmp_path, "simulate", "trade", "--url", f"http://127.0.0.1:{port}/alipay/notify"
        )
        user = run(tmp_path, "user", APP, "2088000000000001", "--url", f"http://127.0.0.1:{port}")
        refused = malformed_request(port, token)
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)

    assert simulated.returncode == user.returncode == 0, simulated.stderr + user.stderr
    assert refused.startswith(b"HTTP/1.0 400")
    records = [json.loads(line) for line in err.splitlines()]  # every line parses
    assert {"time", "level", "logger", "message"} <= set(records[0])
    messages = [r["message"] for r in records]
    assert any(m.startswith("serving on 127.0.0.1") for m in messages)
    assert any(m.startswith("refused a malformed HTTP request") for m in messages)
    keys = [p.read_text() for p in (tmp_path / "data" / "dev").glob("*.pem")]
    bodies = [k for key in keys for k in key.splitlines() if k and "-----" not in k]
    for secret in [token, *bodies]:
        assert secret not in err
    assert "PRIVATE KEY" not in err


def test_an_intake_worker_logs_as_its_primary_does(tmp_path: Path) -> None:
    port, intake_port = free_port(), free_port()
    workers = {
        "SUBGATE_SERVER__INTAKE_WORKERS": "1",
        "SUBGATE_SERVER__INTAKE_PORT": str(intake_port),
    }
    process = subprocess.Popen(
        [*RUN, "--log-format", "json", "--log-level", "DEBUG", "serve", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **workers},
    )
    try:
        wait_for_port(port, process)
        wait_for_port(intake_port, process)  # served by the worker alone
        token = (tmp_path / "data" / "dev" / "api_token").read_text().strip()
        refused = malformed_request(intake_port, token)
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)

    assert refused.startswith(b"HTTP/1.0 400")
    records = [json.loads(line) for line in err.splitlines()]  # the worker's lines parse too
    by_worker = [r for r in records if r["pid"] != process.pid]
    assert any(r["message"].startswith("refused a malformed HTTP request") for r in by_worker)
    assert token not in err


def wait_for_port(port: int, process: subprocess.Popen[str], deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        assert process.poll() is None, "the service exited early"
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)  # polling the port, bounded by the deadline
    pytest.fail("the service did not listen")


def malformed_request(port: int, token: str) -> bytes:
    """A request aiohttp's parser refuses, a token on its bad line (the log must not show it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: Bearer {token}\x00\r\n\r\n".encode()
        )
        return sock.recv(65536)
