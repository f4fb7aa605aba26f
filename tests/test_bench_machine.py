"""The machine record every bench result carries: the CPU model, context switches per request
(``bench.machine``) and system calls per request from a strace probe (``bench.syscalls``), on
texts this kind of machine really produces and on real child processes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from bench.machine import (
    SwitchCount,
    context_switches,
    cpu_model,
    cpu_model_in,
    lscpu_model_in,
    switches_in_status,
)
from bench.syscalls import not_measured, strace_counts, summary_of, syscall_probe, syscalls_line

# The start of /proc/cpuinfo on the AMD EPYC VM of 2026-12-06 (two processors, first shown).
CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC
stepping\t: 1
microcode\t: 0x1000065
cpu MHz\t\t: 2445.412

processor\t: 1
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC 9004
"""

LSCPU = """Architecture:                            x86_64
CPU op-mode(s):                          32-bit, 64-bit
Vendor ID:                               AuthenticAMD
Model name:                              AMD EPYC
CPU family:                              25
"""

# A thread's /proc/<pid>/task/<tid>/status, its switch lines and their neighbours.
STATUS = """Name:\tpython
Umask:\t0022
State:\tS (sleeping)
Tgid:\t9226
Pid:\t9226
Threads:\t3
Cpus_allowed_list:\t0-1
voluntary_ctxt_switches:\t1523
nonvoluntary_ctxt_switches:\t87
"""

# `strace -c -f -o FILE` of a short Python program on the same machine (strace 6.1): the
# errors column is blank where a call never failed.
STRACE = """% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 74.75    0.149436        1867        80        40 wait4
  4.18    0.008356           6      1372       588 openat
  3.60    0.007193           4      1700       326 newfstatat
  3.00    0.005998           6       945           mmap
  2.06    0.004125          17       237       198 execve
  1.94    0.003875           4       937           close
  0.00    0.000000           0         6           chdir
------ ----------- ----------- --------- --------- ----------------
100.00    0.199909          22      9024      1355 total
"""

SLEEPER = """
import sys, time
print("ready", flush=True)
for line in sys.stdin:
    time.sleep(0.001)  # two certain voluntary switches per line (the read for the next line
    time.sleep(0.001)  # waits only if that line has not arrived yet)
    print("ok", flush=True)
"""


def test_the_cpu_model_is_the_first_processors_with_its_family_and_model() -> None:
    assert cpu_model_in(CPUINFO) == "AMD EPYC (family 25, model 1)"
    assert cpu_model_in("processor\t: 0\nBogoMIPS\t: 48.00\nCPU implementer\t: 0x41\n") is None
    assert lscpu_model_in(LSCPU) == "AMD EPYC"
    if Path("/proc/cpuinfo").exists():
        assert cpu_model() != "unknown"


def test_a_threads_switches_are_its_voluntary_and_nonvoluntary_ones() -> None:
    assert switches_in_status(STATUS) == 1523 + 87
    assert switches_in_status(Path("/proc/self/status").read_text()) >= 0


def _talk(child: subprocess.Popen[str], lines: int) -> int:
    assert child.stdin is not None and child.stdout is not None
    for _ in range(lines):
        child.stdin.write("ping\n")
        child.stdin.flush()
        assert child.stdout.readline() == "ok\n"
    return lines


def test_a_processs_switches_per_request_count_each_wait_it_made() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", SLEEPER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as child:
        try:
            assert child.stdout is not None and child.stdout.readline() == "ready\n"
            count = SwitchCount(child.pid).start()
            requests = _talk(child, 20)
            per_request = count.per_request(requests)
            assert context_switches(child.pid) >= count.started_at + 40
        finally:
            child.kill()

    assert per_request >= 2.0  # the two sleeps, and the read when it waits for its line


def test_an_strace_table_gives_calls_per_request() -> None:
    counts = strace_counts(STRACE)

    assert counts["total"] == 9024 and counts["wait4"] == 80 and counts["mmap"] == 945
    assert len(counts) == 8  # the header, the dashes and the blank errors column are not rows
    summary = summary_of(counts, 1000)
    assert summary["syscalls_per_request"] == 9.02
    assert list(summary["syscalls_top_per_request"])[:2] == ["newfstatat", "openat"]
    assert syscalls_line(summary) == "9.02 syscalls/req"
    assert syscalls_line(not_measured("strace missing")) == "not measured (strace missing)"


def test_the_probe_counts_a_real_processs_calls_or_says_why_it_could_not() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", SLEEPER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as child:
        try:
            assert child.stdout is not None and child.stdout.readline() == "ready\n"
            probed = syscall_probe(child.pid, lambda: _talk(child, 50))
        finally:
            child.kill()

    if shutil.which("strace") is None:
        assert probed == not_measured("strace missing")
    elif probed["syscalls_per_request"] is None:  # ptrace refused here (a locked-down CI)
        assert probed["syscalls_note"].startswith("not measured (strace could not attach")
    else:  # a read, a sleep and a write per line at least
        assert probed["syscalls_per_request"] >= 3.0
        assert probed["syscall_probe_requests"] == 50
