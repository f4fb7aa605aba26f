"""A destination for the delivery benchmark: answers 204 at once and keeps what arrived.

python -m bench.receiver PORT

Every POST counts once per ``webhook-id`` (a retry is counted as a repeat, not a second event),
and its commit-to-delivery latency is taken from the payload's ``timestamp`` (when the event's
cause was written) to its arrival here, on this machine's clock. ``GET /stats`` answers the
counts and the latencies (milliseconds), ``GET /count`` the count alone (what a benchmark polls
while the sender is running: encoding every latency on each poll would hold this receiver's loop,
and with it the sender, for milliseconds at a time); ``POST /reset`` forgets them. It verifies
nothing: the benchmark measures the sender, and the tests verify signatures.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime

import uvloop
from aiohttp import web

SEEN = web.AppKey("seen", set[str])
LATENCIES = web.AppKey("latencies", list[float])
REPEATS = web.AppKey("repeats", list[int])
ARRIVALS = web.AppKey("arrivals", list[float])  # the first and the last arrival


async def receive(request: web.Request) -> web.Response:
    body = await request.read()
    arrived = time.time()
    event_id = request.headers.get("webhook-id", "")
    if event_id in request.app[SEEN]:
        request.app[REPEATS][0] += 1
        return web.Response(status=204)
    request.app[SEEN].add(event_id)
    arrivals = request.app[ARRIVALS]
    arrivals[:] = [arrivals[0] if arrivals else arrived, arrived]
    stamp = json.loads(body)["timestamp"]
    written = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    request.app[LATENCIES].append((arrived - written) * 1000)
    return web.Response(status=204)


async def stats(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "events": len(request.app[SEEN]),
            "repeats": request.app[REPEATS][0],
            "first_at": request.app[ARRIVALS][0] if request.app[ARRIVALS] else None,
            "last_at": request.app[ARRIVALS][-1] if request.app[ARRIVALS] else None,
            "latencies_ms": request.app[LATENCIES],
        }
    )


async def count(request: web.Request) -> web.Response:
    return web.json_response({"events": len(request.app[SEEN])})


async def reset(request: web.Request) -> web.Response:
    request.app[SEEN].clear()
    request.app[LATENCIES].clear()
    request.app[REPEATS][0] = 0
    request.app[ARRIVALS].clear()
    return web.Response(status=204)


def build() -> web.Application:
    app = web.Application(client_max_size=1 << 20)
    app[SEEN], app[LATENCIES], app[REPEATS], app[ARRIVALS] = set(), [], [0], []
    app.router.add_get("/stats", stats)
    app.router.add_get("/count", count)
    app.router.add_post("/reset", reset)
    app.router.add_post("/{tail:.*}", receive)
    return app


def main() -> None:
    web.run_app(
        build(),
        host="127.0.0.1",
        port=int(sys.argv[1]),
        print=None,
        access_log=None,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
