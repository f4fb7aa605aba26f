"""Load from a separate process: wrk with a Lua script that posts a distinct body per request."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

LUA = r"""
local bodies, counter, step = {}, 0, 1
local headers = {["Content-Type"] = "application/x-www-form-urlencoded; text/html; charset=UTF-8"}
local threads = {}
function setup(thread) thread:set("tid", #threads); table.insert(threads, thread) end
function init(args)
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
  step = tonumber(args[2]); counter = tonumber(args[3]) + tonumber(tid)
end
function request()
  counter = counter + step
  return wrk.format("POST", nil, headers, bodies[(counter % #bodies) + 1])
end
function done(s, latency, requests)
  local e = s.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,' ..
    '"timeout":%d,"p50_us":%d,"p99_us":%d,"p999_us":%d}\n',
    s.requests, s.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
"""


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


def run_wrk(
    url: str, bodies: Path, connections: int, seconds: float, offset: int, threads: int = 2
) -> LoadResult:
    script = bodies.parent / "post.lua"
    script.write_text(LUA)
    command = [
        require_wrk(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "5s",
        "-s",
        str(script),
        url,
        "--",
        str(bodies),
        str(threads),
        str(offset),
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    line = next(li for li in output.splitlines() if li.startswith("WRKJSON "))
    raw = json.loads(line.removeprefix("WRKJSON "))
    errors = sum(raw[k] for k in ("connect", "read", "write", "status", "timeout"))
    secs = raw["duration_us"] / 1e6
    return LoadResult(
        requests=raw["requests"],
        seconds=round(secs, 2),
        rps=round(raw["requests"] / secs, 1),
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        p999_ms=raw["p999_us"] / 1000,
        errors=errors,
    )
