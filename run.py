"""Subgate's one entry point.

    python run.py [serve] [--config PATH] [--host H] [--port N]
    python run.py simulate {message,trade,follow,unfollow,check,subscribe} [--url URL] ...
    python run.py listen --forward-to URL [--app APP] [--url URL] [--token T] [--types GLOB]
    python run.py migrate [--config PATH]

Configuration: --config PATH, else $SUBGATE_CONFIG, else ./subgate.toml; with none of them,
dev mode (SQLite and generated keys under ./data/).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from server.dev import listen
from server.dev.banner import dev_banner
from server.dev.mode import DEV_APP_ID, dev_keys, dev_sandbox, dev_settings
from server.dev.simulator import KINDS, build_fields, encode_form, post_notification, sign_as_alipay
from server.dev.subscribe import SUBSCRIBE_KINDS, add_subscribe_arguments, run_subscribe
from server.runtime.event_loop import new_event_loop
from server.runtime.garbage_collector import settle_garbage_collector
from server.runtime.open_files import connection_cap, raise_open_file_limit
from server.settings import Settings, SettingsError, find_config, load_settings
from server.web.serving import serve_app
from server.wiring import build_app
from server.wiring.app import open_configured_store
from server.workers.supervision import WorkerStartFailed
from storage import redacted_url
from verify import KeyMaterialError, SignType, load_private_key
from verify.form import normalize_charset

DATA_DIR = Path("data")
logger = logging.getLogger("subgate")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "simulate" and args.kind in SUBSCRIBE_KINDS:
            return run_subscribe(args, DATA_DIR)
        if args.command == "simulate":
            return asyncio.run(_simulate(args))
        if args.command == "listen":
            return listen.run_listen(args, DATA_DIR)
        settings = _settings(args.config)
        if args.command == "migrate":
            return asyncio.run(_migrate(settings))
        return _serve(settings, args)
    except (SettingsError, KeyMaterialError, WorkerStartFailed) as error:
        print(f"subgate: {error}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run.py", description="Subgate: Alipay notification gateway"
    )
    parser.add_argument(
        "--config", help="TOML config file (default: $SUBGATE_CONFIG, ./subgate.toml)"
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    parser.add_argument("--host", help="listen address (default: [server] host)")
    parser.add_argument("--port", type=int, help="listen port (default: [server] port)")
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="run the service (the default)")
    serve.add_argument("--host", default=argparse.SUPPRESS)
    serve.add_argument("--port", type=int, default=argparse.SUPPRESS)
    commands.add_parser("migrate", help="apply schema migrations and exit")
    simulate = commands.add_parser("simulate", help="post a notification signed as Alipay would")
    simulate.add_argument("kind", choices=(*KINDS, *SUBSCRIBE_KINDS))
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
    listen.add_arguments(
        commands.add_parser(
            "listen", help="forward a running Subgate's events to a local URL, signed"
        )
    )
    parser.set_defaults(command="serve")
    return parser


def _settings(explicit: str | None) -> Settings:
    path = find_config(explicit)
    if path is None:
        return dev_settings(DATA_DIR)
    return load_settings(path)


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    host = args.host or settings.server.host
    port = args.port if args.port is not None else settings.server.port
    if port == settings.server.intake_port:
        raise SettingsError(f"--port {port} is the intake_port of the intake workers")
    # Intake workers listen on the same host as the primary, --host included.
    server = settings.server.model_copy(update={"host": host, "port": port})
    settings = settings.model_copy(update={"server": server})
    cap = connection_cap(settings, raise_open_file_limit())
    sandbox = dev_sandbox(DATA_DIR, settings) if settings.dev_mode else None
    settings = sandbox.configure(settings) if sandbox is not None else settings
    app = build_app(settings)
    if sandbox is not None:
        sandbox.attach(app)
    app.on_startup.append(_settle_garbage_collector)
    loop, loop_name = new_event_loop(settings.server.event_loop)
    logger.info("serving on %s:%d with the %s event loop", host, port, loop_name)
    logger.info("at most %d connections open at once (server.max_connections)", cap)
    if sandbox is not None:
        print(dev_banner(DATA_DIR, host, port, sandbox.url), flush=True)
    serve_app(app, host, port, cap, loop)
    return 0


async def _settle_garbage_collector(app: web.Application) -> None:
    settle_garbage_collector()


async def _simulate(args: argparse.Namespace) -> int:
    key_path = Path(args.alipay_key) if args.alipay_key else dev_keys(DATA_DIR).alipay_private_key
    if not key_path.is_file():
        print(
            f"subgate: no stand-in Alipay key at {key_path}; start `python run.py` once first",
            file=sys.stderr,
        )
        return 2
    key = load_private_key(key_path.read_text("utf-8"))
    charset = normalize_charset(args.charset)
    fields, rule = build_fields(
        args.kind, app_id=args.app_id, user_id=args.user_id, now=datetime.now(UTC), charset=charset
    )
    signed = sign_as_alipay(fields, key, SignType(args.sign_type), rule, charset)
    status, code, body = await post_notification(
        args.url, encode_form(signed, charset), charset, with_charset=not args.no_header_charset
    )
    print(f"POST {args.url} ({args.kind}, {charset}, {args.sign_type}, {rule.value}) -> {status}")
    if code:
        print(f"refused: {code}")
    print(body.decode(charset, errors="replace"))
    return 0 if status == 200 else 1


async def _migrate(settings: Settings) -> int:
    storage = settings.storage
    store = await open_configured_store(storage)
    await store.close()
    logger.info("schema is up to date (%s)", redacted_url(storage.url))
    return 0


if __name__ == "__main__":
    sys.exit(main())
