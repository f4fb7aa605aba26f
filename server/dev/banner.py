"""What dev mode prints at start: that it is a sandbox, where everything is, and commands to
paste, written with the interpreter this process runs on so that they run as printed."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from server.dev.mode import DEV_APP_ID, DEV_TOP_APP, dev_keys


def python_command() -> str:
    """The interpreter as a shell would find it from here (relative when it is below here)."""
    executable = Path(sys.executable)
    try:
        return str(executable.relative_to(Path.cwd()))
    except ValueError:
        return str(executable) if os.sep in sys.executable else "python"


def dev_banner(data_dir: Path, host: str, port: int, sandbox_url: str) -> str:
    keys = dev_keys(data_dir)
    python = python_command()
    api = f"http://{host}:{port}/v1/apps/{DEV_APP_ID}"
    return f"""
Subgate is running in dev mode (no config file found): a sandbox, nothing reaches a real platform.
  Gateway URL (应用网关):  http://{host}:{port}/alipay/notify
  Dev app id:             {DEV_APP_ID}   (TOP app: {DEV_TOP_APP})
  Sandbox platform:       {sandbox_url}   (stands in for Alipay and TOP; what it delivered:
                          {sandbox_url}/sandbox/users/USER_ID)
  Database:               {data_dir / "subgate.db"}
  Stand-in Alipay key:    {keys.alipay_private_key}

Simulate Alipay from another terminal:
  {python} run.py simulate subscribe   # the user accepts dev_one_time; the mini-program reports it
  {python} run.py simulate check       # the life-account console's gateway check
  {python} run.py simulate follow      # a user follows the life account
  {python} run.py simulate message     # a generic message-service notification
  {python} run.py simulate trade --charset gbk

Consent and send API (token in {keys.api_token}, templates dev_one_time and dev_long_term):
  curl -H "Authorization: Bearer $(cat {keys.api_token})" \\
    {api}/users/2088000000000001/subscriptions
"""
