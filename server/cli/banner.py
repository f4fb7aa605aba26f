"""What dev mode prints at start: that it is a sandbox, where everything is, and commands to
paste that run as printed, with the interpreter and the entry point this process was started
with (and ``--url`` when it does not listen where the commands look by default)."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

from server.cli.client import DEFAULT_URL
from server.dev.mode import DEV_APP_ID, DEV_TOP_APP, dev_keys


def shown_path(path: str) -> str:
    """``path`` relative to the working directory when it lies below it, else as it is."""
    absolute = Path(path).absolute()
    try:
        return str(absolute.relative_to(Path.cwd()))
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


def dev_banner(data_dir: Path, host: str, port: int, sandbox_url: str) -> str:
    """The banner's text."""
    keys = dev_keys(data_dir)
    run = command_prefix()
    reach = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 (compared)
    base = f"http://{reach}:{port}"
    url = "" if base == DEFAULT_URL else f" --url {base}"
    notify = "" if base == DEFAULT_URL else f" --url {base}/alipay/notify"
    return f"""
Subgate is running in dev mode (no config file found): a sandbox, nothing reaches a real platform.
  Gateway URL (应用网关):  {base}/alipay/notify
  Dev app id:             {DEV_APP_ID}   (TOP app: {DEV_TOP_APP})
  Sandbox platform:       {sandbox_url}   (stands in for Alipay and TOP; what it delivered:
                          {sandbox_url}/sandbox/users/USER_ID)
  Database:               {data_dir / "subgate.db"}
  Stand-in Alipay key:    {keys.alipay_private_key}

Simulate Alipay from another terminal:
  {run} simulate subscribe{notify}   # the user accepts dev_one_time; the mini-program reports it
  {run} simulate check{notify}       # the life-account console's gateway check
  {run} simulate follow{notify}      # a user follows the life account
  {run} simulate message{notify}     # a generic message-service notification
  {run} simulate trade --charset gbk{notify}

Look at what happened (the dev token is read from {keys.api_token}):
  {run} user {DEV_APP_ID} 2088000000000001{url}
  {run} messages {DEV_APP_ID}{url}
  {run} notifications {DEV_APP_ID}{url}
  {base}/console   (the web console: sign in with the token in {keys.api_token})

Consent and send API (templates dev_one_time and dev_long_term):
  curl -H "Authorization: Bearer $(cat {keys.api_token})" \\
    {base}/v1/apps/{DEV_APP_ID}/users/2088000000000001/subscriptions
"""


def print_dev_banner(data_dir: Path, host: str, port: int, sandbox_url: str) -> None:
    """The banner, on stdout, at once."""
    sys.stdout.write(dev_banner(data_dir, host, port, sandbox_url))
    sys.stdout.flush()
