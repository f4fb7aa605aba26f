"""run.py as a new user meets it: a real process in dev mode, then ``simulate`` against it."""

from __future__ import annotations

import gc
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from aiohttp import web

from server.cli.service import settle_collector
from server.runtime.garbage_collector import GC_THRESHOLDS
from tests.pki import public_pem, rsa_key

ROOT = Path(__file__).resolve().parent.parent
RUN = [sys.executable, str(ROOT / "run.py")]
SERVE_OUTPUT = "serve.out"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_listening(port: int, process: subprocess.Popen[str], deadline: float = 30.0) -> None:
    """Poll the port (bounded); fail with the server's output if it dies or never listens."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if process.poll() is not None:
            pytest.fail(f"server exited early:\n{process.communicate()[0]}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    pytest.fail("server did not start listening")


@contextmanager
def dev_process(cwd: Path) -> Iterator[tuple[int, list[str]]]:
    """``run.py serve`` in dev mode; its whole output is in the list once it has stopped (and in
    ``output_so_far`` while it runs)."""
    port = free_port()
    with (cwd / SERVE_OUTPUT).open("w") as sink:
        process = subprocess.Popen(
            [*RUN, "serve", "--port", str(port)],
            cwd=cwd,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    output: list[str] = []
    try:
        wait_until_listening(port, process)
        yield port, output
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
        output.append((cwd / SERVE_OUTPUT).read_text())


def output_so_far(cwd: Path) -> list[str]:
    return (cwd / SERVE_OUTPUT).read_text().splitlines()


@pytest.fixture
def dev_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    with dev_process(tmp_path) as (port, output):
        yield port, tmp_path
    assert "PRIVATE KEY" not in output[0]


def simulate(cwd: Path, port: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RUN, "simulate", *args, "--url", f"http://127.0.0.1:{port}/alipay/notify"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_dev_mode_serves_and_simulate_drives_the_whole_flow(dev_server: tuple[int, Path]) -> None:
    port, cwd = dev_server

    results = [
        (kind, simulate(cwd, port, kind, *extra))
        for kind, extra in [
            ("check", ["--charset", "gbk"]),
            ("follow", ["--user-id", "2088000000000042"]),
            ("unfollow", ["--user-id", "2088000000000042"]),
            ("message", []),
            ("trade", ["--charset", "gbk", "--no-header-charset"]),
            ("trade", ["--sign-type", "RSA"]),
        ]
    ]

    assert [(kind, r.returncode) for kind, r in results] == [(kind, 0) for kind, _ in results]
    outputs = dict(results)
    assert "<success>true</success>" in outputs["check"].stdout
    assert outputs["message"].stdout.rstrip().endswith("success")
    with sqlite3.connect(cwd / "data" / "subgate.db") as db:
        kinds = sorted(row[0] for row in db.execute("SELECT kind FROM notifications"))
        events = [
            row for row in db.execute("SELECT user_id, action FROM consent_events ORDER BY id")
        ]
    assert len(kinds) == 6
    assert events == [("2088000000000042", "follow"), ("2088000000000042", "unfollow")]


def test_dev_keys_are_made_once_and_kept_private(dev_server: tuple[int, Path]) -> None:
    _, cwd = dev_server
    key_file = cwd / "data" / "dev" / "alipay_private_key.pem"

    assert key_file.stat().st_mode & 0o077 == 0
    assert (cwd / "data" / "dev" / "app_private_key.pem").stat().st_mode & 0o077 == 0


def test_simulated_notification_for_another_app_is_refused(dev_server: tuple[int, Path]) -> None:
    port, cwd = dev_server

    result = simulate(cwd, port, "trade", "--app-id", "2021999999999999")

    assert result.returncode == 1
    assert "refused: unknown_app" in result.stdout


def test_a_bad_config_stops_start_up_with_a_clear_message(tmp_path: Path) -> None:
    config = tmp_path / "subgate.toml"
    config.write_text('[[apps]]\napp_id = "2021000000000001"\nalipay_public_key = "nope.pem"\n')

    result = subprocess.run(
        [*RUN, "--config", str(config)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 1
    assert "app 2021000000000001" in result.stderr and "Traceback" not in result.stderr


def test_migrate_creates_the_schema_and_exits(tmp_path: Path) -> None:
    config = tmp_path / "subgate.toml"
    key = tmp_path / "alipay.pem"
    key.write_text(public_pem(rsa_key(1).public_key()))
    database = tmp_path / "x.db"
    config.write_text(
        f'[storage]\nurl = "sqlite:///{database}"\n'
        '[[apps]]\napp_id = "1"\nalipay_public_key = "alipay.pem"\n'
    )

    result = subprocess.run(
        [*RUN, "--config", str(config), "migrate"], capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr
    with sqlite3.connect(tmp_path / "x.db") as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"notifications", "consent_events", "refusal_counts", "schema_migrations"} <= tables


def test_the_service_names_its_event_loop_and_serves_on_it(tmp_path: Path) -> None:
    with dev_process(tmp_path) as (port, output):
        result = simulate(tmp_path, port, "trade")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "with the uvloop event loop" in output[0]


async def test_start_up_freezes_what_it_made_and_collects_less_often() -> None:
    saved = gc.get_threshold()
    try:
        await settle_collector(web.Application())
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == GC_THRESHOLDS
    finally:
        gc.unfreeze()
        gc.set_threshold(*saved)


def test_the_dev_banner_prints_commands_that_run_as_printed(tmp_path: Path) -> None:
    with dev_process(tmp_path) as (port, _):
        # The banner is printed before the service listens: it is in the output already.
        commands = [line.split("#")[0].strip() for line in output_so_far(tmp_path)]
        printed = [c for c in commands if "run.py simulate check " in c or "run.py user " in c]
        console = next(c.split()[0] for c in commands if c.endswith("/console") or "/console " in c)
        with urllib.request.urlopen(console, timeout=30) as answer:  # noqa: S310 (loopback)
            login_page = answer.read().decode()
        results = [
            subprocess.run(
                shlex.split(command), cwd=tmp_path, capture_output=True, text=True, timeout=60
            )
            for command in printed
        ]

    assert len(printed) == 2, "\n".join(commands)
    assert all(command.startswith(f"{sys.executable} {ROOT / 'run.py'} ") for command in printed)
    assert f"--url http://127.0.0.1:{port}" in printed[0]
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    assert "<success>true</success>" in results[0].stdout
    assert console == f"http://127.0.0.1:{port}/console" and 'name="token"' in login_page
