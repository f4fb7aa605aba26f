"""``subgate`` (and ``python run.py``): the parser, built from each command group, and the one
place a command's failure becomes a line on stderr and an exit status.

    subgate [serve] [--config PATH] [--host H] [--port N] [--log-format json]
    subgate migrate | simulate KIND | listen --forward-to URL
    subgate user APP USER | message APP ID | messages APP | settle APP ID | notifications APP

Configuration: --config PATH, else $SUBGATE_CONFIG, else ./subgate.toml; with none of them, dev
mode (SQLite and generated keys under ./data/). Every setting may also come from the
environment (docs/settings.md).
"""

from __future__ import annotations

import argparse
import sys

from server.cli import consents, listen, messages, notifications, service, simulate
from server.cli.failure import CommandFailed, one_line
from server.runtime.log_format import LOG_FORMATS, configure_logging

COMMAND_GROUPS = (service, simulate, listen, consents, messages, notifications)


def main(argv: list[str] | None = None) -> int:
    """Run the command ``argv`` names (default: the process's arguments); its exit status."""
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    try:
        return int(args.run(args))
    except CommandFailed as failure:
        sys.stderr.write(f"subgate {args.command_name}: {one_line(str(failure))}\n")
        return failure.status
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    """Every command, ``serve`` when none is named."""
    parser = argparse.ArgumentParser(
        description="Subgate: Alipay notification gateway, consent ledger and sender",
        epilog="Each command takes --help.",
    )
    parser.add_argument(
        "--config", help="TOML config file (default: $SUBGATE_CONFIG, ./subgate.toml)"
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    parser.add_argument(
        "--log-format", default="text", choices=LOG_FORMATS, help="text, or one JSON per line"
    )
    parser.add_argument("--host", help="listen address (default: [server] host)")
    parser.add_argument("--port", type=int, help="listen port (default: [server] port)")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.add_commands(commands)
    parser.set_defaults(run=service.run_serve, command_name="serve")
    return parser
