"""``subgate listen``: a running Subgate's events, forwarded to a service on this machine.

For a developer's laptop, like ``stripe listen``: the service under development cannot be reached
by a push (it has no stable address), so this follows the app's feed (``server.cli.feed``) and
posts each event to the local URL exactly as a push would (``server.delivery.signing``), signed
with a secret made for this run and printed at start. The cursor is kept in memory: a new run
starts at the end of the log again, unless told to start from its beginning.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import secrets
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

import aiohttp

from server.cli.client import ApiTarget, SubgateApi, add_target_options, target_of
from server.cli.feed import FeedReader
from server.cli.output import write_line
from server.cli.paths import DATA_DIR
from server.delivery.signing import webhook_headers
from server.dev.mode import DEV_APP_ID
from server.events.payloads import encode

POST_TIMEOUT_SECONDS = 10.0
FIRST_RETRY_SECONDS = 0.25


@dataclass(frozen=True, slots=True)
class ListenOptions:
    """What ``listen`` was asked to do."""

    forward_to: str
    app_id: str = DEV_APP_ID
    types: str | None = None
    retries: int = 3
    from_start: bool = False


def add_commands(commands: Any) -> None:
    """``listen`` and its options."""
    parser = commands.add_parser(
        "listen",
        help="forward a running Subgate's events to a local URL, signed",
        description="Follow an app's event feed and post each event, signed as a push "
        "would be, to a local URL (like `stripe listen`).",
    )
    parser.add_argument("--forward-to", required=True, help="the local URL to post events to")
    parser.add_argument("--app", default=DEV_APP_ID, help=f"the app (default: {DEV_APP_ID})")
    add_target_options(parser)
    parser.add_argument("--types", help="comma-separated globs, e.g. 'consent.*'")
    parser.add_argument("--retries", type=int, default=3, help="retries of a failed local post")
    parser.add_argument(
        "--from-start", action="store_true", help="forward the whole log, not only new events"
    )
    parser.set_defaults(run=run_listen, command_name="listen")


def new_secret() -> str:
    """A Standard Webhooks secret for this run: ``whsec_`` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def run_listen(args: argparse.Namespace) -> int:
    """``listen``: forwards until interrupted (0); ``CommandFailed`` when Subgate cannot be
    followed."""
    target = target_of(args, DATA_DIR)
    options = ListenOptions(
        forward_to=args.forward_to,
        app_id=args.app,
        types=args.types,
        retries=max(0, args.retries),
        from_start=args.from_start,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(listen(options, target))
    return 0


async def listen(options: ListenOptions, target: ApiTarget, out: TextIO = sys.stdout) -> None:
    """Forward events until interrupted."""
    secret = new_secret()
    key = base64.b64decode(secret.removeprefix("whsec_"))
    async with aiohttp.ClientSession() as session:
        feed = FeedReader(SubgateApi(target, session), options.app_id, options.types)
        await Listener(options, feed, session, key, out).run(secret)


class Listener:
    """Follows one app's feed and forwards each event, one at a time, in the feed's order."""

    def __init__(
        self,
        options: ListenOptions,
        feed: FeedReader,
        session: aiohttp.ClientSession,
        key: bytes,
        out: TextIO,
    ) -> None:
        self._options = options
        self._feed = feed
        self._session = session
        self._key = key
        self._out = out

    async def run(self, secret: str) -> None:
        """Start at the end of the log (or its start), then forward for ever."""
        cursor = None if self._options.from_start else await self._feed.end_of_log()
        self._say(f"Ready. Your webhook signing secret is {secret} (valid for this run)")
        self._say(
            f"Forwarding events of app {self._options.app_id} from {self._feed.api.target.url} "
            f"to {self._options.forward_to}"
        )
        async for event in self._feed.follow(cursor):
            await self._forward(event)

    async def _forward(self, event: Mapping[str, Any]) -> None:
        body = encode({name: event[name] for name in ("type", "timestamp", "data")})
        attempts = self._options.retries + 1
        for attempt in range(1, attempts + 1):
            answer = await self._post(str(event["id"]), body)
            ok = answer.startswith("2")
            if ok or attempt == attempts:
                suffix = "" if ok else f", gave up after {attempts} attempts; going on"
                self._say(f"{describe_event(event)} -> {answer}{suffix}")
                return
            self._say(f"{describe_event(event)} -> {answer}, retrying ({attempt}/{attempts - 1})")
            await asyncio.sleep(FIRST_RETRY_SECONDS * 2 ** (attempt - 1))

    async def _post(self, event_id: str, body: bytes) -> str:
        """The local answer in a few words: ``200 (3 ms)``, or why there was none."""
        headers = webhook_headers([self._key], event_id, datetime.now(UTC), body)
        headers["Content-Type"] = "application/json"
        began = time.monotonic()
        timeout = aiohttp.ClientTimeout(total=POST_TIMEOUT_SECONDS)
        try:
            async with self._session.post(
                self._options.forward_to, data=body, headers=headers, timeout=timeout
            ) as response:
                await response.read()
        except (aiohttp.ClientError, TimeoutError) as error:
            return f"no answer: {str(error) or type(error).__name__}"
        return f"{response.status} ({(time.monotonic() - began) * 1000:.0f} ms)"

    def _say(self, line: str) -> None:
        write_line(self._out, line)


def describe_event(event: Mapping[str, Any]) -> str:
    """An event in one line: when, its id and type, and its kind or status."""
    data = event.get("data") or {}
    detail = data.get("kind") or data.get("status") or ""
    return f"{event['timestamp']}  {event['id']}  {event['type']}  {detail}".rstrip()
