"""``user APP USER``: a user's consent, per template and channel, and every event behind it, as
the running Subgate's ledger holds them."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from server.cli.client import SubgateApi, add_target_options, app_path, with_api
from server.cli.output import print_json, print_table, write_line

STATE_COLUMNS = (
    "template_id",
    "channel",
    "kind",
    "status",
    "credits",
    "can_send",
    "updated_at",
    "last_source",
)
HISTORY_COLUMNS = ("template_id", "channel", "occurred_at", "action", "source", "evidence")


def add_commands(commands: Any) -> None:
    """``user``."""
    user = commands.add_parser(
        "user",
        help="a user's consent state per template and channel, and its history",
        description="Show what the consent ledger holds for one user: the state of each "
        "template and channel (may it be sent? credits left?) and every event, oldest first.",
    )
    user.add_argument("app", help="the app id")
    user.add_argument("user", help="the user id (2088...)")
    add_target_options(user)
    user.add_argument("--json", action="store_true", help="print JSON instead of tables")
    user.set_defaults(run=run_user, command_name="user")


def run_user(args: argparse.Namespace) -> int:
    """Print the user's states and histories."""
    answer = asyncio.run(user_consent(args))
    if args.json:
        print_json(answer)
        return 0
    print_table(STATE_COLUMNS, answer["subscriptions"])
    write_line(sys.stdout, "")
    rows = [
        {"template_id": h["template_id"], "channel": h["channel"], **event}
        for h in answer["histories"]
        for event in h["events"]
    ]
    print_table(HISTORY_COLUMNS, rows)
    return 0


async def user_consent(args: argparse.Namespace) -> dict[str, Any]:
    """The subscriptions answer, with the history of each of them under ``histories``."""
    return await with_api(args, lambda api: _with_histories(api, args))


async def _with_histories(api: SubgateApi, args: argparse.Namespace) -> dict[str, Any]:
    user_path = app_path(args.app, "users", args.user, "subscriptions")
    answer: dict[str, Any] = await api.get(user_path)
    answer["histories"] = [
        await api.get(_history_path(args, state["template_id"]), {"channel": state["channel"]})
        for state in answer["subscriptions"]
    ]
    return answer


def _history_path(args: argparse.Namespace, template_id: str) -> str:
    return app_path(args.app, "users", args.user, "subscriptions", template_id, "history")
