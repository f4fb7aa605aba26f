"""``python run.py listen``: a running Subgate's events, forwarded to a service on this machine.

For a developer's laptop, like ``stripe listen``: the service under development cannot be reached
by a push (it has no stable address), so this follows the app's feed with long-polls and posts
each event to the local URL exactly as a push would (``server.delivery.signing``), signed with a
secret made for this run and printed at start. The cursor is kept in memory: a new run starts at
the end of the log again, unless told to start from its beginning.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import secrets
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from server.delivery.signing import webhook_headers
from server.dev.mode import DEV_APP_ID, dev_keys
from server.events.payloads import encode

TOKEN_VARIABLE = "SUBGATE_TOKEN"  # noqa: S105 (the variable's name, not a token)
WAIT_SECONDS = 25  # each long-poll, below the feed's 30-second limit
POST_TIMEOUT_SECONDS = 10.0
FIRST_RETRY_SECONDS = 0.25
SKIP_PAGE = 500


class ListenFailed(Exception):
    """Why listening cannot go on, in one line (Subgate unreachable, the token refused)."""


@dataclass(frozen=True, slots=True)
class ListenOptions:
    """What ``run.py listen`` was asked to do."""

    forward_to: str
    url: str
    token: str
    app_id: str = DEV_APP_ID
    types: str | None = None
    retries: int = 3
    from_start: bool = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``run.py listen``."""
    parser.add_argument("--forward-to", required=True, help="the local URL to post events to")
    parser.add_argument("--app", default=DEV_APP_ID, help=f"the app (default: {DEV_APP_ID})")
    parser.add_argument(
        "--url", default="http://127.0.0.1:8080", help="the running Subgate (default: %(default)s)"
    )
    parser.add_argument(
        "--token",
        help=f"an API token with the read scope (default: ${TOKEN_VARIABLE}, else the dev token)",
    )
    parser.add_argument("--types", help="comma-separated globs, e.g. 'consent.*'")
    parser.add_argument("--retries", type=int, default=3, help="retries of a failed local post")
    parser.add_argument(
        "--from-start", action="store_true", help="forward the whole log, not only new events"
    )


def options_from(args: argparse.Namespace, data_dir: Path) -> ListenOptions:
    """The options, the token found where the developer keeps it; ``ListenFailed`` without."""
    token = args.token or os.environ.get(TOKEN_VARIABLE) or _dev_token(data_dir)
    if not token:
        raise ListenFailed(f"no API token: pass --token or set ${TOKEN_VARIABLE}")
    return ListenOptions(
        forward_to=args.forward_to,
        url=args.url.rstrip("/"),
        token=token,
        app_id=args.app,
        types=args.types,
        retries=max(0, args.retries),
        from_start=args.from_start,
    )


def _dev_token(data_dir: Path) -> str | None:
    path = dev_keys(data_dir).api_token
    return path.read_text("ascii").strip() if path.is_file() else None


def new_secret() -> str:
    """A Standard Webhooks secret for this run: ``whsec_`` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def run_listen(args: argparse.Namespace, data_dir: Path) -> int:
    """``run.py listen``: its exit status (0 when interrupted, 1 when Subgate cannot be
    followed, 2 without a token)."""
    try:
        options = options_from(args, data_dir)
    except ListenFailed as failure:
        _write(sys.stderr, f"subgate listen: {failure}")
        return 2
    try:
        return asyncio.run(listen(options))
    except KeyboardInterrupt:
        return 0


async def listen(options: ListenOptions, out: TextIO = sys.stdout) -> int:
    """Forward events until interrupted; 1 with a one-line error when Subgate cannot be
    followed."""
    secret = new_secret()
    key = base64.b64decode(secret.removeprefix("whsec_"))
    try:
        async with aiohttp.ClientSession() as session:
            await Listener(options, session, key, out).run(secret)
    except ListenFailed as failure:
        _write(sys.stderr, f"subgate listen: {failure}")
        return 1
    return 0


class Listener:
    """Follows one app's feed and forwards each event, one at a time, in the feed's order."""

    def __init__(
        self, options: ListenOptions, session: aiohttp.ClientSession, key: bytes, out: TextIO
    ) -> None:
        self._options = options
        self._session = session
        self._key = key
        self._out = out

    async def run(self, secret: str) -> None:
        """Start at the end of the log (or its start), then forward for ever."""
        cursor = None if self._options.from_start else await self._end_of_log()
        self._say(f"Ready. Your webhook signing secret is {secret} (valid for this run)")
        self._say(
            f"Forwarding events of app {self._options.app_id} from {self._options.url} "
            f"to {self._options.forward_to}"
        )
        while True:
            page = await self._page(cursor, WAIT_SECONDS, 100)
            for event in page["events"]:
                await self._forward(event)
            cursor = page["next_cursor"]

    async def _end_of_log(self) -> str | None:
        """The cursor past every event already written (their history is not forwarded)."""
        cursor = None
        while True:
            page = await self._page(cursor, 0, SKIP_PAGE)
            cursor = str(page["next_cursor"])
            if len(page["events"]) < SKIP_PAGE:
                return cursor

    async def _page(self, cursor: str | None, wait: int, limit: int) -> dict[str, Any]:
        params = {"wait": str(wait), "limit": str(limit)}
        params |= {"after": cursor} if cursor else {}
        params |= {"types": self._options.types} if self._options.types else {}
        url = f"{self._options.url}/v1/apps/{self._options.app_id}/events"
        headers = {"Authorization": f"Bearer {self._options.token}"}
        timeout = aiohttp.ClientTimeout(total=wait + 15)
        try:
            async with self._session.get(
                url, params=params, headers=headers, timeout=timeout
            ) as response:
                body = await response.json(content_type=None)
                status = response.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            reason = f"cannot reach Subgate at {self._options.url}: {_why(error)}"
            raise ListenFailed(reason) from None
        return _page_of(status, body)

    async def _forward(self, event: Mapping[str, Any]) -> None:
        body = encode({name: event[name] for name in ("type", "timestamp", "data")})
        attempts = self._options.retries + 1
        for attempt in range(1, attempts + 1):
            answer = await self._post(str(event["id"]), body)
            ok = answer.startswith("2")
            if ok or attempt == attempts:
                suffix = "" if ok else f", gave up after {attempts} attempts; going on"
                self._say(f"{_describe(event)} -> {answer}{suffix}")
                return
            self._say(f"{_describe(event)} -> {answer}, retrying ({attempt}/{attempts - 1})")
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
            return f"no answer: {_why(error)}"
        return f"{response.status} ({(time.monotonic() - began) * 1000:.0f} ms)"

    def _say(self, line: str) -> None:
        _write(self._out, line)


def _page_of(status: int, body: Any) -> dict[str, Any]:
    """A feed answer's page, or ``ListenFailed`` saying what Subgate refused."""
    if status == 200 and isinstance(body, dict):
        return body
    error = body.get("error", {}) if isinstance(body, dict) else {}
    code, message = error.get("code", "?"), error.get("message", "")
    if status in (401, 403):
        raise ListenFailed(f"Subgate refused the token ({status} {code}: {message})")
    raise ListenFailed(f"Subgate answered {status} {code}: {message}")


def _describe(event: Mapping[str, Any]) -> str:
    data = event.get("data") or {}
    detail = data.get("kind") or data.get("status") or ""
    return f"{event['timestamp']}  {event['id']}  {event['type']}  {detail}".rstrip()


def _write(stream: TextIO, line: str) -> None:
    """One line, at once: whoever reads the output (a terminal, a test) sees it as it happens."""
    stream.write(line + "\n")
    stream.flush()


def _why(error: BaseException) -> str:
    return str(error) or type(error).__name__
