"""Dev mode: no config file, so one dev app and a stand-in "Alipay", keys made on first start.

The stand-in Alipay key pair lets ``python run.py simulate`` sign notifications exactly as
Alipay does, so a new user sees the whole flow without an Alipay account. Nothing here is
ever used when a config file exists.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from server.settings import AppSettings, Settings, StorageSettings, TemplateSettings, TokenSettings

DEV_APP_ID = "2021000000000001"
DEV_ONE_TIME_TEMPLATE = "dev_one_time"
DEV_LONG_TERM_TEMPLATE = "dev_long_term"


@dataclass(frozen=True, slots=True)
class DevKeys:
    app_private_key: Path
    alipay_private_key: Path
    alipay_public_key: Path
    api_token: Path


def dev_keys(data_dir: Path) -> DevKeys:
    folder = data_dir / "dev"
    return DevKeys(
        app_private_key=folder / "app_private_key.pem",
        alipay_private_key=folder / "alipay_private_key.pem",
        alipay_public_key=folder / "alipay_public_key.pem",
        api_token=folder / "api_token",
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
    return keys


def dev_settings(data_dir: Path) -> Settings:
    keys = ensure_dev_keys(data_dir)
    app = AppSettings(
        app_id=DEV_APP_ID,
        alipay_public_key=str(keys.alipay_public_key.resolve()),
        app_private_key=str(keys.app_private_key.resolve()),  # type: ignore[arg-type]
        sign_types=["RSA2", "RSA"],
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
    storage = StorageSettings(url=f"sqlite:///{(data_dir / 'subgate.db').resolve()}")
    return Settings(apps=[app], tokens=[token], storage=storage, base_dir=Path.cwd(), dev_mode=True)


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
