"""``message APP ID``, ``messages APP`` and ``settle APP ID``: the outbox of a running Subgate,
and the operator's verdict on a message whose outcome is ``unknown`` (docs/sending.md)."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from server.cli.client import SubgateApi, add_target_options, app_path, with_api
from server.cli.output import print_fields, print_json, print_table

LIST_COLUMNS = (
    "message_id",
    "status",
    "channel",
    "user_id",
    "template_id",
    "attempts",
    "created_at",
)
STATUSES = ("pending", "sending", "queued", "sent", "failed", "unknown")
PAGE_LIMIT = 100


def add_commands(commands: Any) -> None:
    """``message``, ``messages`` and ``settle``."""
    message = _command(commands, "message", "one message: its status, attempts, platform codes")
    message.add_argument("app", help="the app id")
    message.add_argument("id", help="the message id")
    message.set_defaults(run=run_message)
    listing = _command(commands, "messages", "the app's messages, newest first")
    listing.add_argument("app", help="the app id")
    listing.add_argument("--status", help=f"only in this status ({', '.join(STATUSES)})")
    listing.add_argument("--channel", help="only on this channel (mini_template, life_label, ...)")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    listing.set_defaults(run=run_messages)
    settle = _command(commands, "settle", "settle a message whose outcome is unknown")
    settle.add_argument("app", help="the app id")
    settle.add_argument("id", help="the message id")
    outcome = settle.add_mutually_exclusive_group(required=True)
    outcome.add_argument("--delivered", action="store_true", help="it reached the user")
    outcome.add_argument(
        "--not-delivered", action="store_true", help="it did not (a one-time credit is refunded)"
    )
    settle.add_argument("--reason", required=True, help="why you know (kept as evidence)")
    settle.set_defaults(run=run_settle)


def _command(commands: Any, name: str, summary: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name, help=summary, description=summary[0].upper() + summary[1:] + "."
    )
    add_target_options(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(command_name=name)
    return parser


def run_message(args: argparse.Namespace) -> int:
    """Print one message."""
    path = app_path(args.app, "messages", args.id)
    return _show(args, lambda api: api.get(path))


def run_settle(args: argparse.Namespace) -> int:
    """Settle one message and print it as it is now."""
    body = {"outcome": "delivered" if args.delivered else "not_delivered", "reason": args.reason}
    path = app_path(args.app, "messages", args.id) + ":settle"
    return _show(args, lambda api: api.post(path, body))


def _show(args: argparse.Namespace, call: Callable[[SubgateApi], Awaitable[Any]]) -> int:
    message = asyncio.run(with_api(args, call))
    if args.json:
        print_json(message)
    else:
        print_fields(message)
    return 0


def run_messages(args: argparse.Namespace) -> int:
    """Print the app's messages (in one status, on one channel), newest first."""
    messages = asyncio.run(with_api(args, lambda api: list_messages(api, args)))
    if args.json:
        print_json(messages)
    else:
        print_table(LIST_COLUMNS, messages)
    return 0


async def list_messages(api: SubgateApi, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Up to ``--limit`` messages, page by page."""
    found: list[dict[str, Any]] = []
    query = {name: value for name in ("status", "channel") if (value := getattr(args, name))}
    cursor: str | None = None
    while len(found) < args.limit:
        limit = str(min(PAGE_LIMIT, args.limit - len(found)))
        page = await api.get(
            app_path(args.app, "messages"),
            {**query, "limit": limit, **({"after": cursor} if cursor else {})},
        )
        found += page["messages"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    return found
