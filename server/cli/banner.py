"""What dev mode prints at start: where Subgate listens, and commands to try that run as printed
(with the interpreter and the entry point this process was started with)."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

from server.cli.client import DEFAULT_URL
from server.dev.mode import DEV_APP_ID, dev_keys


def shown_path(path: str) -> str:
    """``path`` relative to the working directory when it lies below it, else as it is."""
    absolute = Path(path).absolute()
    try:
        return str(Path(".") / absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)


def command_prefix(argv0: str | None = None, interpreter: str | None = None) -> str:
    """How to start this program again from the same directory: ``.venv/bin/python run.py``
    for a script, ``subgate`` for the console script found on $PATH, its path otherwise."""
    program = argv0 if argv0 is not None else sys.argv[0]
    if program.endswith(".py"):
        python = shown_path(interpreter or sys.executable)
        return f"{shlex.quote(python)} {shlex.quote(shown_path(program))}"
    name = os.path.basename(program)
    found = shutil.which(name)
    if found and Path(found).resolve() == Path(program).resolve():
        return name
    return shlex.quote(shown_path(program))


def print_dev_banner(host: str, port: int, data_dir: Path) -> None:
    """The banner, on stdout, at once."""
    keys = dev_keys(data_dir)
    run = command_prefix()
    reach = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 (compared)
    base = f"http://{reach}:{port}"
    url = "" if base == DEFAULT_URL else f" --url {base}"
    notify_url = "" if base == DEFAULT_URL else f" --url {base}/alipay/notify"
    sys.stdout.write(
        f"""
Subgate is running in dev mode (no config file found).
  Gateway URL (应用网关):  {base}/alipay/notify
  Dev app id:             {DEV_APP_ID}
  Database:               {data_dir / "subgate.db"}
  Stand-in Alipay key:    {keys.alipay_private_key}

Simulate Alipay from another terminal:
  {run} simulate check{notify_url}       # the life-account console's gateway check
  {run} simulate follow{notify_url}      # a user follows the life account
  {run} simulate unfollow{notify_url}
  {run} simulate message{notify_url}     # a generic message-service notification
  {run} simulate trade --charset gbk{notify_url}

Look at what happened (the dev token is read from {keys.api_token}):
  {run} notifications {DEV_APP_ID}{url}
  {run} user {DEV_APP_ID} 2088000000000001{url}
"""
    )
    sys.stdout.flush()
