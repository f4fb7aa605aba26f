"""``run.py simulate subscribe``: the dev user answers a subscribe panel, as on a phone.

Two steps, as in real life: the user's choice reaches the platform (the sandbox records it,
so its subscription query says so), and the mini-program reports the callback result it got to
Subgate (``POST /v1/apps/{app}/users/{user}/subscribe-results``, with the dev token). With
``--no-report`` only the first happens, as when a report is lost: ``:sync`` then finds the
difference.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import aiohttp

from server.dev.mode import DEV_ONE_TIME_TEMPLATE, dev_keys

SUBSCRIBE_KINDS = ("subscribe",)


class SubscribeFailed(Exception):
    """Why the subscription could not be simulated, in one line."""


def add_subscribe_arguments(parser: argparse.ArgumentParser) -> None:
    """The options ``simulate subscribe`` adds to ``simulate`` (``--url``, ``--app-id`` and
    ``--user-id`` are shared: the Subgate address is taken from ``--url``)."""
    parser.add_argument(
        "--template", default=DEV_ONE_TIME_TEMPLATE, help="subscribe: the template id"
    )
    parser.add_argument("--reject", action="store_true", help="subscribe: the user declines")
    parser.add_argument(
        "--no-report",
        action="store_true",
        help="subscribe: the platform records it, the mini-program's report never arrives",
    )


def run_subscribe(args: argparse.Namespace, data_dir: Path) -> int:
    """Its exit status: 0 when every step was answered 2xx."""
    try:
        return asyncio.run(simulate_subscribe(args, data_dir))
    except SubscribeFailed as failure:
        _say(sys.stderr, f"subgate: {failure}")
        return 2


async def simulate_subscribe(
    args: argparse.Namespace, data_dir: Path, out: TextIO = sys.stdout
) -> int:
    keys = dev_keys(data_dir)
    sandbox, token = _read(keys.sandbox_url), _read(keys.api_token)
    choice = {"template_id": args.template, "accept": not args.reject}
    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        url = f"{sandbox}/sandbox/users/{args.user_id}/subscribe"
        status, result = await _post(session, url, choice, {})
        decided = "declined" if args.reject else "accepted"
        _say(out, f"sandbox: user {args.user_id} {decided} {args.template} -> {status}")
        _say(out, json.dumps(result, ensure_ascii=False))
        if status != 200 or args.no_report:
            return 0 if status == 200 else 1
        report = f"{_base(args.url)}/v1/apps/{args.app_id}/users/{args.user_id}/subscribe-results"
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex}
        status, answer = await _post(session, report, result, headers)
    _say(out, f"POST {report} -> {status}")
    _say(out, json.dumps(answer, ensure_ascii=False))
    return 0 if 200 <= status < 300 else 1


async def _post(
    session: aiohttp.ClientSession, url: str, body: object, headers: dict[str, str]
) -> tuple[int, Any]:
    try:
        async with session.post(url, json=body, headers=headers) as response:
            return response.status, await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as error:
        raise SubscribeFailed(f"no answer from {url}: {error or type(error).__name__}") from None


def _read(path: Path) -> str:
    if not path.is_file():
        raise SubscribeFailed(f"no {path}: start the dev service (python run.py) first")
    return path.read_text("ascii").strip()


def _base(url: str) -> str:
    """Subgate's origin, from ``simulate``'s ``--url`` (its notify URL)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _say(stream: TextIO, line: str) -> None:
    stream.write(line + "\n")
    stream.flush()
