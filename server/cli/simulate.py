"""``simulate``: post a notification signed as Alipay would, to a running Subgate (dev mode's
stand-in Alipay key by default), or answer a subscribe panel as the dev user
(``simulate subscribe``: ``server.dev.subscribe``). The ``simulate`` command is defined here, in
``add_commands``; a kind of its own adds its options there (``add_subscribe_arguments``)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from server.cli.failure import USAGE_STATUS, CommandFailed
from server.cli.paths import DATA_DIR
from server.dev.mode import DEV_APP_ID, dev_keys
from server.dev.simulator import KINDS, build_fields, encode_form, post_notification, sign_as_alipay
from server.dev.subscribe import SUBSCRIBE_KINDS, add_subscribe_arguments, run_subscribe
from verify import SignType, load_private_key
from verify.form import normalize_charset


def add_commands(commands: Any) -> None:
    """``simulate KIND`` and its options."""
    simulate = commands.add_parser(
        "simulate",
        help="post a notification signed as Alipay would",
        description="Sign a notification as Alipay does and post it to a running Subgate; "
        "prints the HTTP status and Subgate's answer.",
    )
    simulate.add_argument(
        "kind", choices=(*KINDS, *SUBSCRIBE_KINDS), help="which notification (or subscribe)"
    )
    simulate.add_argument("--url", default="http://127.0.0.1:8080/alipay/notify")
    simulate.add_argument("--app-id", default=DEV_APP_ID)
    simulate.add_argument("--user-id", default="2088000000000001")
    simulate.add_argument("--charset", default="utf-8", help="utf-8, gbk or gb18030")
    simulate.add_argument("--sign-type", default="RSA2", choices=["RSA2", "RSA"])
    simulate.add_argument(
        "--no-header-charset", action="store_true", help="omit charset from Content-Type"
    )
    simulate.add_argument("--alipay-key", help="stand-in Alipay private key (default: the dev key)")
    add_subscribe_arguments(simulate)
    simulate.set_defaults(run=run_simulate, command_name="simulate")


def run_simulate(args: argparse.Namespace) -> int:
    """Post one notification (0 when Subgate answered 200), or simulate a subscribe panel."""
    if args.kind in SUBSCRIBE_KINDS:
        return run_subscribe(args, DATA_DIR)
    return asyncio.run(_simulate(args))


async def _simulate(args: argparse.Namespace) -> int:
    key_path = Path(args.alipay_key) if args.alipay_key else dev_keys(DATA_DIR).alipay_private_key
    if not key_path.is_file():
        raise CommandFailed(
            f"no stand-in Alipay key at {key_path}; start the service once first", USAGE_STATUS
        )
    key = load_private_key(key_path.read_text("utf-8"))
    charset = normalize_charset(args.charset)
    fields, rule = build_fields(
        args.kind, app_id=args.app_id, user_id=args.user_id, now=datetime.now(UTC), charset=charset
    )
    signed = sign_as_alipay(fields, key, SignType(args.sign_type), rule, charset)
    try:
        status, code, body = await post_notification(
            args.url, encode_form(signed, charset), charset, with_charset=not args.no_header_charset
        )
    except (aiohttp.ClientError, TimeoutError) as error:
        why = str(error) or type(error).__name__
        raise CommandFailed(f"cannot reach Subgate at {args.url}: {why}") from None
    lines = [
        f"POST {args.url} ({args.kind}, {charset}, {args.sign_type}, {rule.value}) -> {status}"
    ]
    lines += [f"refused: {code}"] if code else []
    lines.append(body.decode(charset, errors="replace"))
    sys.stdout.write("\n".join(lines) + "\n")
    return 0 if status == 200 else 1
