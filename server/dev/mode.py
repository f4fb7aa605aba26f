"""Dev mode: no config file, so one dev app and a stand-in "Alipay", keys made on first start.

The stand-in Alipay key pair lets ``python run.py simulate`` sign notifications exactly as
Alipay does, and lets the sandbox (``server.dev.sandbox``) answer the dev app's calls as Alipay
does, so a new user sees the whole flow without an Alipay account. Nothing here is ever used
when a config file exists.

Dev settings never name a real platform: until ``dev_sandbox(...).configure`` puts the
sandbox's address in, every gateway URL is loopback's discard port (``UNSERVED``), where a
call fails at once.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from server.dev.sandbox.platform import SandboxPlatform
from server.dev.sandbox.record import LONG_TERM, ONE_TIME, SandboxRecord
from server.dev.sandbox.service import Sandbox
from server.settings import (
    AppSettings,
    Settings,
    StorageSettings,
    TemplateSettings,
    TokenSettings,
    TopAppSettings,
)
from verify import load_private_key

DEV_APP_ID = "2021000000000001"
DEV_ONE_TIME_TEMPLATE = "dev_one_time"
DEV_LONG_TERM_TEMPLATE = "dev_long_term"
DEV_TOP_APP = "dev_top"
DEV_TOP_APP_KEY = "12345678"
UNSERVED = "http://127.0.0.1:9"


@dataclass(frozen=True, slots=True)
class DevKeys:
    app_private_key: Path
    alipay_private_key: Path
    alipay_public_key: Path
    api_token: Path
    top_app_secret: Path
    sandbox_url: Path  # where the running sandbox listens, for ``simulate subscribe``
    sandbox_record: Path  # what the sandbox remembers (``server.dev.sandbox.record``)


def dev_keys(data_dir: Path) -> DevKeys:
    folder = data_dir / "dev"
    return DevKeys(
        app_private_key=folder / "app_private_key.pem",
        alipay_private_key=folder / "alipay_private_key.pem",
        alipay_public_key=folder / "alipay_public_key.pem",
        api_token=folder / "api_token",
        top_app_secret=folder / "top_app_secret",
        sandbox_url=folder / "sandbox_url",
        sandbox_record=folder / "sandbox.json",
    )


def ensure_dev_keys(data_dir: Path) -> DevKeys:
    """Create the dev key pairs once; later starts reuse them."""
    keys = dev_keys(data_dir)
    keys.app_private_key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not keys.app_private_key.exists():
        _write_private_key(keys.app_private_key, rsa.generate_private_key(65537, 2048))
    if not keys.alipay_private_key.exists():
        alipay = rsa.generate_private_key(65537, 2048)
        _write_private_key(keys.alipay_private_key, alipay)
        keys.alipay_public_key.write_bytes(
            alipay.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    if not keys.api_token.exists():
        _write_private(keys.api_token, secrets.token_urlsafe(32).encode("ascii"))
    if not keys.top_app_secret.exists():
        _write_private(keys.top_app_secret, secrets.token_hex(16).encode("ascii"))
    return keys


def dev_settings(data_dir: Path) -> Settings:
    keys = ensure_dev_keys(data_dir)
    app = AppSettings(
        app_id=DEV_APP_ID,
        alipay_public_key=str(keys.alipay_public_key.resolve()),
        app_private_key=str(keys.app_private_key.resolve()),  # type: ignore[arg-type]
        sign_types=["RSA2", "RSA"],
        gateway_url=f"{UNSERVED}/gateway.do",
        v3_gateway_url=UNSERVED,
        templates=[
            TemplateSettings(
                id=DEV_ONE_TIME_TEMPLATE, kind="one_time", keywords=["keyword1", "keyword2"]
            ),
            TemplateSettings(id=DEV_LONG_TERM_TEMPLATE, kind="long_term", keywords=["keyword1"]),
        ],
    )
    token = TokenSettings(
        token=keys.api_token.read_text("ascii").strip(),  # type: ignore[arg-type]
        apps=["*"],
        scopes=["read", "write", "send"],
    )
    top_app = TopAppSettings(
        name=DEV_TOP_APP,
        app_key=DEV_TOP_APP_KEY,
        app_secret=keys.top_app_secret.read_text("ascii").strip(),  # type: ignore[arg-type]
        gateway_url=f"{UNSERVED}/router/rest",
    )
    storage = StorageSettings(url=f"sqlite:///{(data_dir / 'subgate.db').resolve()}")
    return Settings(
        apps=[app],
        tokens=[token],
        top_apps=[top_app],
        storage=storage,
        base_dir=Path.cwd(),
        dev_mode=True,
    )


def dev_sandbox(data_dir: Path, settings: Settings) -> Sandbox:
    """The stand-in platform for the dev app of ``settings`` (bound, not yet serving)."""
    keys = ensure_dev_keys(data_dir)
    app = settings.apps[0]
    app_key = load_private_key(keys.app_private_key.read_text("utf-8"))
    kinds = {"one_time": ONE_TIME, "long_term": LONG_TERM}
    top_app = settings.top_apps[0]
    platform = SandboxPlatform(
        app_id=app.app_id,
        app_public_key=app_key.public_key(),
        alipay_private_key=load_private_key(keys.alipay_private_key.read_text("utf-8")),
        top_app_key=top_app.app_key,
        top_secret=top_app.app_secret.get_secret_value(),
        templates={template.id: kinds[template.kind] for template in app.templates},
        record=SandboxRecord(keys.sandbox_record),
    )
    return Sandbox(platform, url_file=keys.sandbox_url)


def _write_private_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_private(path, pem)


def _write_private(path: Path, content: bytes) -> None:
    """Create ``path`` readable by its owner only (fails if it exists: never overwrite a key)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(content)
