"""The lookup ceiling: a bare aiohttp handler on the lookup route that checks the bearer token
and answers a fixed, real lookup answer, reading nothing.

python -m bench.lookup_ceiling PORT TOKEN ANSWER_JSON_FILE

It shows what latency this machine and load generator allow at each load with no store and no
ledger at all, on the same event loop Subgate uses (uvloop), so that Subgate's lookup p99 can be
read against it, as intake's is against its verify-only ceiling.
"""

from __future__ import annotations

import hmac
import sys
from pathlib import Path

import uvloop
from aiohttp import web


def build(token: str, answer: bytes) -> web.Application:
    expected = f"Bearer {token}".encode()

    async def lookup(request: web.Request) -> web.Response:
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return web.Response(status=401)
        return web.Response(body=answer, content_type="application/json")

    app = web.Application()
    app.router.add_get("/v1/apps/{app}/users/{user}/subscriptions/{template}", lookup)
    return app


def main() -> None:
    port, token, answer = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3]).read_bytes()
    web.run_app(
        build(token, answer),
        host="127.0.0.1",
        port=port,
        print=None,
        access_log=None,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
