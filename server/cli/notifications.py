"""``notifications APP [--tail]``: the app's verified notifications, as its event feed hands
them on (``notification.received``, server.cli.feed); with ``--tail``, then each new one as it
arrives, until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import Mapping
from typing import Any

from server.cli.client import SubgateApi, add_target_options, with_api
from server.cli.feed import FeedReader
from server.cli.output import print_table, table_lines, write_line

EVENT_TYPE = "notification.received"
COLUMNS = ("received_at", "kind", "notify_id", "detail")


def add_commands(commands: Any) -> None:
    """``notifications``."""
    parser = commands.add_parser(
        "notifications",
        help="the app's verified notifications; --tail follows new ones",
        description="Print the app's latest verified notifications (as the event feed hands "
        "them on); with --tail, keep printing each new one until interrupted.",
    )
    parser.add_argument("app", help="the app id")
    parser.add_argument("--tail", action="store_true", help="follow new notifications")
    parser.add_argument("--last", type=int, default=20, help="how many to show first (20)")
    add_target_options(parser)
    parser.add_argument("--json", action="store_true", help="one JSON event per line")
    parser.set_defaults(run=run_notifications, command_name="notifications")


def run_notifications(args: argparse.Namespace) -> int:
    """Print the latest, then (with ``--tail``) follow; 0 when interrupted."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(with_api(args, lambda api: show_notifications(api, args)))
    return 0


async def show_notifications(api: SubgateApi, args: argparse.Namespace) -> None:
    """The last ``--last`` notifications, then every new one while ``--tail``."""
    feed = FeedReader(api, args.app, EVENT_TYPE)
    latest, cursor = await feed.latest(max(0, args.last))
    rows = [row_of(event) for event in latest]
    if args.json:
        for event in latest:
            write_line(sys.stdout, json.dumps(event, ensure_ascii=False))
    elif args.tail:
        for line in table_lines(COLUMNS, rows):
            write_line(sys.stdout, line)
    else:
        print_table(COLUMNS, rows)
    if args.tail:
        async for event in feed.follow(cursor):
            write_line(sys.stdout, _line(event, args.json))


def row_of(event: Mapping[str, Any]) -> dict[str, Any]:
    """A notification as a table row: when, its kind and id, and its key fields."""
    data = event.get("data") or {}
    fields = data.get("fields") or {}
    detail = " ".join(
        f"{name}={fields[name]}"
        for name in ("out_trade_no", "trade_status", "msg_method", "event_type")
        if name in fields
    )
    return {
        "received_at": data.get("received_at"),
        "kind": data.get("kind"),
        "notify_id": data.get("notify_id"),
        "detail": detail,
    }


def _line(event: Mapping[str, Any], as_json: bool) -> str:
    if as_json:
        return json.dumps(event, ensure_ascii=False)
    row = row_of(event)
    return "  ".join(str(row[c] or "") for c in COLUMNS).rstrip()
