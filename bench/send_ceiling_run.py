"""The send ceiling (``bench.send_ceiling``) measured beside a fake gateway of its own.

The ceiling posts to a fresh ``bench.fake_gateway`` process, the same program Subgate's sends
go to, so that the fake's counts of Subgate's run (its books) stay Subgate's alone. After a
warm-up, one measured run; the fake must have received every send the ceiling counted and
refused none (else the ceiling's signing is wrong, and its rate means nothing). The ceiling's
context switches are read over the measured run and, when asked, its system calls in a probe
after it (``bench.syscalls``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.intake import APP_ID, ROOT
from bench.machine import SwitchCount
from bench.processes import cpu_seconds, free_port, serving
from bench.quiet import Foreign
from bench.service import fake_gateway_command, write_keys
from bench.syscalls import PROBE_SECONDS, syscall_probe

WARM_UP_SECONDS = 2.0
PROBE_FIRST_USER = 2_000_000_000  # apart from the measured run's users
WARM_UP_FIRST_USER = 1_000_000_000


class CeilingProcess:
    """The running ceiling: each ``run`` is one line on its stdin and one JSON line back."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process

    @property
    def pid(self) -> int:
        return self.process.pid

    def run(self, seconds: float, first_user: int) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{seconds} {first_user}\n")
        self.process.stdin.flush()
        answer: dict[str, Any] = json.loads(self.process.stdout.readline())
        return answer


@contextmanager
def ceiling_process(gateway: str, keys_dir: Path, senders: int) -> Iterator[CeilingProcess]:
    command = [
        sys.executable,
        "-m",
        "bench.send_ceiling",
        gateway,
        APP_ID,
        str(keys_dir / "app_private.pem"),
        str(keys_dir / "alipay_public.pem"),
        str(senders),
    ]
    with subprocess.Popen(
        command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None
            if process.stdout.readline().strip() != "ready":
                raise RuntimeError("the send ceiling did not start")
            yield CeilingProcess(process)
        finally:
            process.kill()


def measure(senders: int, seconds: float, workdir: Path, *, probe: bool) -> dict[str, Any]:
    """One measured run of ``senders`` concurrent senders, checked against the fake's counts."""
    keys = write_keys(workdir)
    fake_port = free_port()
    gateway = f"http://127.0.0.1:{fake_port}/gateway.do"
    fake_cmd = fake_gateway_command(fake_port, keys)
    with (
        serving(fake_cmd, fake_port, ROOT, workdir / "ceiling-fake.log") as fake,
        ceiling_process(gateway, workdir, senders) as ceiling,
    ):
        warm = ceiling.run(WARM_UP_SECONDS, WARM_UP_FIRST_USER)
        watch = Foreign(ceiling.pid, fake.pid)
        cpu_before = cpu_seconds(ceiling.pid), cpu_seconds(fake.pid)
        switches = SwitchCount(ceiling.pid).start(), SwitchCount(fake.pid).start()
        result = ceiling.run(seconds, 0)
        sends = max(result["sends"], 1)
        cpu = cpu_seconds(ceiling.pid) - cpu_before[0], cpu_seconds(fake.pid) - cpu_before[1]
        result |= {
            "context_switches_per_send": switches[0].per_request(sends),
            "fake_context_switches_per_send": switches[1].per_request(sends),
            **watch.stop(),
        }
        probed = [0]
        if probe:

            def load() -> int:
                probed[0] = ceiling.run(PROBE_SECONDS, PROBE_FIRST_USER)["sends"]
                return probed[0]

            result |= syscall_probe(ceiling.pid, load)
        with urllib.request.urlopen(f"http://127.0.0.1:{fake_port}/stats") as answer:
            stats = json.loads(answer.read())
    result["cpu_us_per_send"] = {
        "ceiling": round(cpu[0] / sends * 1e6, 1),
        "fake_gateway": round(cpu[1] / sends * 1e6, 1),
    }
    counted = warm["sends"] + result["sends"] + probed[0]
    result["fake_agrees"] = stats["calls"] == counted and not stats["refused"]
    if not result["fake_agrees"] or result["failures"]:
        raise RuntimeError(f"the send ceiling's sends were not all taken: {stats['refused']}")
    return result
