"""wrk with any Lua script: the script's ``request()`` makes the load; this adds the summary.

The script given here only defines ``init`` and ``request`` (and may count things per thread in
global variables named in ``counters``); ``SUMMARY`` appends the ``setup``/``done`` that print one
machine-readable line, summing the counters over the threads. Each thread gets ``tid`` (0, 1, ...)
before ``init`` runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    errors: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def require_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("bench needs wrk: apt-get install wrk (Debian) or brew install wrk")
    return wrk


SUMMARY = r"""
local threads = {}
function setup(thread) thread:set("tid", #threads); table.insert(threads, thread) end
function done(s, latency, requests)
  local e = s.errors
  local extra = {}
  for _, name in ipairs(COUNTERS) do
    local total = 0
    for _, t in ipairs(threads) do total = total + (t:get(name) or 0) end
    table.insert(extra, string.format('"%s":%d', name, total))
  end
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,' ..
    '"timeout":%d,"p50_us":%d,"p99_us":%d,"p999_us":%d,"counters":{%s}}\n',
    s.requests, s.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    table.concat(extra, ",")))
end
"""


@dataclass(frozen=True)
class ScriptResult:
    load: LoadResult
    status_errors: int  # non-2xx/3xx answers (wrk counts them as errors; some loads expect them)
    socket_errors: int
    counters: dict[str, int]


def run_script(
    url: str,
    script: str,
    args: list[str],
    *,
    connections: int,
    seconds: float,
    workdir: Path,
    name: str,
    counters: tuple[str, ...] = (),
    threads: int = 2,
) -> ScriptResult:
    names = ", ".join(f'"{c}"' for c in counters)
    # A file of this run's own: loads run at once (one wrk per replica) must not rewrite the
    # script another wrk is reading.
    handle, name_of_file = tempfile.mkstemp(prefix=f"{name}-", suffix=".lua", dir=workdir)
    path = Path(name_of_file)
    with os.fdopen(handle, "w") as script_file:
        script_file.write(f"COUNTERS = {{{names}}}\n{script}\n{SUMMARY}")
    threads = min(threads, connections)  # wrk needs a connection per thread
    command = [
        require_wrk(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "5s",
        "-s",
        str(path),
        url,
        "--",
        *args,
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    finally:
        path.unlink(missing_ok=True)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    output = done.stdout
    lines = [li for li in output.splitlines() if li.startswith("WRKJSON ")]
    if not lines:
        raise RuntimeError(f"wrk printed no summary: {done.stderr or output}")
    line = lines[-1]
    raw = json.loads(line.removeprefix("WRKJSON "))
    socket_errors = sum(raw[k] for k in ("connect", "read", "write", "timeout"))
    secs = raw["duration_us"] / 1e6
    load = LoadResult(
        requests=raw["requests"],
        seconds=round(secs, 2),
        rps=round(raw["requests"] / secs, 1),
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        p999_ms=raw["p999_us"] / 1000,
        errors=socket_errors + raw["status"],
    )
    return ScriptResult(load, raw["status"], socket_errors, dict(raw["counters"]))
