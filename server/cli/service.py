"""``serve`` and ``migrate``: the service itself, and its schema.

Whatever stops the service before it serves (a configuration it cannot use, a key file it
cannot read, a store it cannot open, a port it cannot listen on, a worker that cannot start)
ends it with one line saying what and where, and exit status 1: ``CommandFailed``.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
from typing import Any

from aiohttp import web

from server.cli.banner import print_dev_banner
from server.cli.failure import CommandFailed
from server.cli.paths import DATA_DIR
from server.dev.mode import dev_sandbox, dev_settings
from server.runtime.event_loop import new_event_loop
from server.runtime.garbage_collector import settle_garbage_collector
from server.runtime.open_files import connection_cap, raise_open_file_limit
from server.settings import (
    Settings,
    SettingsError,
    StorageSettings,
    find_config,
    load_settings,
    with_environment,
)
from server.web.serving import serve_app
from server.wiring import build_app
from server.wiring.app import open_configured_store
from server.workers.supervision import WorkerStartFailed
from storage import StorageError, redacted_url
from verify import KeyMaterialError

logger = logging.getLogger("subgate")
# What a listen that cannot happen raises (the port taken, a privileged port, no such address).
LISTEN_ERRORS = (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL)


def add_commands(commands: Any) -> None:
    """``serve`` (the default) and ``migrate``."""
    serve = commands.add_parser(
        "serve", help="run the service (the default)", description="Run the service."
    )
    serve.add_argument("--config", default=argparse.SUPPRESS, help="TOML config file")
    serve.add_argument("--host", default=argparse.SUPPRESS, help="listen address")
    serve.add_argument("--port", type=int, default=argparse.SUPPRESS, help="listen port")
    serve.set_defaults(run=run_serve, command_name="serve")
    migrate = commands.add_parser(
        "migrate",
        help="apply schema migrations and exit",
        description="Apply the store's pending schema migrations and exit.",
    )
    migrate.add_argument("--config", default=argparse.SUPPRESS, help="TOML config file")
    migrate.set_defaults(run=run_migrate, command_name="migrate")


def settings_of(explicit: str | None) -> Settings:
    """The settings of ``--config``, ``$SUBGATE_CONFIG`` or ``./subgate.toml``; dev mode's
    without any."""
    try:
        path = find_config(explicit)
        return with_environment(dev_settings(DATA_DIR)) if path is None else load_settings(path)
    except SettingsError as error:
        raise CommandFailed(str(error)) from None


def run_serve(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM."""
    settings = settings_of(args.config)
    host = args.host or settings.server.host
    port = args.port if args.port is not None else settings.server.port
    if port == settings.server.intake_port:
        raise CommandFailed(f"--port {port} is the intake_port of the intake workers")
    # Intake workers listen on the same host as the primary, --host included.
    server = settings.server.model_copy(update={"host": host, "port": port})
    settings = settings.model_copy(update={"server": server})
    try:
        _serve(settings, host, port)
    except (SettingsError, KeyMaterialError, WorkerStartFailed) as error:
        raise CommandFailed(str(error)) from None
    except StorageError as error:
        raise store_failure(settings.storage.url, error) from None
    except OSError as error:
        if error.errno not in LISTEN_ERRORS:
            raise
        # uvloop's strerror is a sentence of its own; the system's says it in a few words.
        raise CommandFailed(f"cannot listen on {host}:{port}: {os.strerror(error.errno)}") from None
    return 0


def _serve(settings: Settings, host: str, port: int) -> None:
    cap = connection_cap(settings, raise_open_file_limit())
    sandbox = dev_sandbox(DATA_DIR, settings) if settings.dev_mode else None
    settings = sandbox.configure(settings) if sandbox is not None else settings
    app = build_app(settings)
    if sandbox is not None:
        sandbox.attach(app)
    app.on_startup.append(settle_collector)
    loop, loop_name = new_event_loop(settings.server.event_loop)
    logger.info("serving on %s:%d with the %s event loop", host, port, loop_name)
    logger.info("at most %d connections open at once (server.max_connections)", cap)
    if sandbox is not None:
        print_dev_banner(DATA_DIR, host, port, sandbox.url)
    serve_app(app, host, port, cap, loop)


async def settle_collector(app: web.Application) -> None:
    """Once started: freeze what start-up made and collect less often."""
    settle_garbage_collector()


def run_migrate(args: argparse.Namespace) -> int:
    """Apply pending migrations to the configured store, then exit."""
    storage = settings_of(args.config).storage
    try:
        asyncio.run(_migrate(storage))
    except StorageError as error:
        raise store_failure(storage.url, error) from None
    logger.info("schema is up to date (%s)", redacted_url(storage.url))
    return 0


async def _migrate(storage: StorageSettings) -> None:
    store = await open_configured_store(storage)
    await store.close()


def store_failure(url: str, error: StorageError) -> CommandFailed:
    """The store named by ``url`` (its password hidden) cannot be opened, and why."""
    return CommandFailed(f"cannot open the store {redacted_url(url)}: {error}")
