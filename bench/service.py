"""Subgate as a real process with the consent API on: its config, keys, token and command.

Production settings: WAL with ``synchronous = "FULL"`` (the default), default outbox settings,
log level WARNING (as the intake benchmark runs it). Keys come from ``bench/.cache`` (the same
stand-in Alipay key and app key the intake benchmark uses).
"""

from __future__ import annotations

import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.intake import APP_ID, Workspace, private_pem, public_pem, serve_command

ONE_TIME = "ac768fca1ce245ccae9404bb5243c49b"  # keywords 1-3
LONG_TERM = "9aa357acb7c6434aba294aded1cdfb7c"  # keywords 1-2
SECOND_ONE_TIME = "0b1fcca882aa435382ae98641e14d37a"  # keyword 1
TEMPLATES: tuple[tuple[str, str, int], ...] = (
    (ONE_TIME, "one_time", 3),
    (LONG_TERM, "long_term", 2),
    (SECOND_ONE_TIME, "one_time", 1),
)
KINDS = {template: kind for template, kind, _ in TEMPLATES}


@dataclass(frozen=True)
class Keys:
    """PEM files: Subgate gets the app private and Alipay public key; the fake the other two."""

    app_private: Path
    app_public: Path
    alipay_private: Path
    alipay_public: Path


def write_keys(root: Path) -> Keys:
    space = Workspace.create(root)
    keys = Keys(
        app_private=root / "app_private.pem",
        app_public=root / "app_public.pem",
        alipay_private=root / "alipay_private.pem",
        alipay_public=root / "alipay_public.pem",
    )
    keys.app_public.write_bytes(public_pem(space.app_key))
    keys.alipay_private.write_bytes(private_pem(space.alipay_key))
    return keys


def fake_gateway_command(port: int, keys: Keys) -> list[str]:
    """The fake Alipay gateway (``bench/fake_gateway.py``) on ``port``, with the fake's two keys."""
    return [
        sys.executable,
        "-m",
        "bench.fake_gateway",
        str(port),
        str(keys.app_public),
        str(keys.alipay_private),
    ]


def new_token() -> str:
    """A fresh API token per run (nothing secret is kept in the repository)."""
    return secrets.token_urlsafe(32)


def write_config(
    path: Path,
    database: Path | str,
    keys: Keys,
    token: str,
    gateway_url: str | None = None,
    call_processes: int = 0,
) -> Path:
    """One app with the three templates and a token with every scope; calls go to the fake.
    ``database``: a SQLite file, or a store URL (``bench/postgres_ledger.py``)."""
    if isinstance(database, Path):
        store = [f'url = "sqlite:///{database.resolve()}"', 'synchronous = "FULL"']
    else:
        store = [f'url = "{database}"']
    lines = [
        "[storage]",
        *store,
        "[outbox]",
        f"call_processes = {call_processes}",
        "[[apps]]",
        f'app_id = "{APP_ID}"',
        f'alipay_public_key = "{keys.alipay_public}"',
        f'app_private_key = "{keys.app_private}"',
    ]
    if gateway_url is not None:
        lines.append(f'gateway_url = "{gateway_url}"')
    for template, kind, keywords in TEMPLATES:
        names = ", ".join(f'"keyword{i}"' for i in range(1, keywords + 1))
        lines += [
            "[[apps.templates]]",
            f'id = "{template}"',
            f'kind = "{kind}"',
            f"keywords = [{names}]",
            'page = "pages/index/index"',
        ]
    lines += [
        "[[tokens]]",
        f'token = "{token}"',
        f'apps = ["{APP_ID}"]',
        'scopes = ["read", "write", "send"]',
    ]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)  # it holds the token
    return path


def command(config: Path, port: int) -> list[str]:
    return serve_command(config, port)
