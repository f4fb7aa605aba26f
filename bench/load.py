"""The intake load: wrk posting a distinct signed notification per request, round-robin."""

from __future__ import annotations

from pathlib import Path

from bench.wrk import LoadResult, run_script

REQUEST = r"""
local bodies, counter, step = {}, 0, 1
local headers = {["Content-Type"] = "application/x-www-form-urlencoded; text/html; charset=UTF-8"}
function init(args)
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
  step = tonumber(args[2]); counter = tonumber(args[3]) + tonumber(tid)
end
function request()
  counter = counter + step
  return wrk.format("POST", nil, headers, bodies[(counter % #bodies) + 1])
end
"""


def run_wrk(
    url: str, bodies: Path, connections: int, seconds: float, offset: int, threads: int = 2
) -> LoadResult:
    """Each wrk thread starts at ``offset`` + its number and steps by the thread count, so no
    two requests of a run post the same notification while the file lasts."""
    threads = min(threads, connections)
    return run_script(
        url,
        REQUEST,
        [str(bodies), str(threads), str(offset)],
        connections=connections,
        seconds=seconds,
        workdir=bodies.parent,
        name="post",
        threads=threads,
    ).load
