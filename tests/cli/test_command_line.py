"""The command line itself: ``--help`` on every command, and the failures that need no running
service (nothing listening, no token), each one line on stderr with a non-zero exit."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from server.cli.banner import command_prefix, shown_path
from tests.cli.operator_service import RUN, SUBGATE, Finished, start_command
from tests.server.subgate_process import free_port

COMMANDS = (
    "serve", "migrate", "simulate", "listen", "user", "message", "messages", "settle",
    "notifications",
)  # fmt: skip


async def run(
    *args: str, cwd: Path, token: str | None = None, program: tuple[str, ...] = RUN
) -> Finished:
    process = await start_command(*args, token=token, cwd=cwd, program=program)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return Finished(process.returncode, out.decode(), err.decode())


async def test_every_command_has_help(tmp_path: Path) -> None:
    top = await run("--help", cwd=tmp_path, program=(SUBGATE,))
    helps = await asyncio.gather(*(run(name, "--help", cwd=tmp_path) for name in COMMANDS))

    assert top.status == 0 and top.out.startswith("usage: subgate")
    for name in COMMANDS:
        assert name in top.out
    for name, done in zip(COMMANDS, helps, strict=True):
        assert done.status == 0, (name, done.err)
        assert done.out.startswith(f"usage: run.py {name}"), name


@pytest.mark.parametrize("command", [("user", "2021000000000001", "2088000000000001"),
                                     ("messages", "2021000000000001", "--status", "unknown"),
                                     ("notifications", "2021000000000001", "--tail")])  # fmt: skip
async def test_without_a_running_subgate_it_says_so_in_one_line(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"

    done = await run(*command, "--url", url, cwd=tmp_path, token="some-token-0123456789")

    assert done.status == 1 and done.out == ""
    [line] = done.err.splitlines()
    assert line.startswith(f"subgate {command[0]}: cannot reach Subgate at {url}: ")


async def test_without_a_token_it_says_where_to_put_one(tmp_path: Path) -> None:
    done = await run("message", "2021000000000001", "msg_1", cwd=tmp_path)

    assert done.status == 2
    assert done.err == "subgate message: no API token: pass --token or set $SUBGATE_TOKEN\n"


async def test_settle_needs_an_outcome_and_a_reason(tmp_path: Path) -> None:
    done = await run("settle", "2021000000000001", "msg_1", "--delivered", cwd=tmp_path)

    assert done.status == 2
    assert "--reason" in done.err and "Traceback" not in done.err


def test_the_banner_names_the_interpreter_and_the_script_as_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".venv" / "bin").mkdir(parents=True)

    inside = command_prefix("run.py", str(tmp_path / ".venv" / "bin" / "python"))
    outside = command_prefix("/srv/subgate/run.py", "/usr/bin/python3")
    script = command_prefix(SUBGATE)

    assert inside == ".venv/bin/python run.py"
    assert outside == "/usr/bin/python3 /srv/subgate/run.py"
    assert script in ("subgate", shown_path(SUBGATE))


async def test_settle_takes_exactly_one_outcome(tmp_path: Path) -> None:
    both = await run("settle", "2021000000000001", "m", "--delivered", "--not-delivered",
                     "--reason", "x", cwd=tmp_path)  # fmt: skip

    assert both.status == 2 and "not allowed with argument" in both.err
