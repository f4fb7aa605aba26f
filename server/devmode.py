"""Dev mode: no config file, so one dev app and a stand-in "Alipay", keys made on first start.

The stand-in Alipay key pair lets ``python run.py simulate`` sign notifications exactly as
Alipay does, so a new user sees the whole flow without an Alipay account. Nothing here is
ever used when a config file exists.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from server.settings import AppSettings, Settings, StorageSettings

DEV_APP_ID = "2021000000000001"


@dataclass(frozen=True, slots=True)
class DevKeys:
    app_private_key: Path
    alipay_private_key: Path
    alipay_public_key: Path


def dev_keys(data_dir: Path) -> DevKeys:
    folder = data_dir / "dev"
    return DevKeys(
        app_private_key=folder / "app_private_key.pem",
        alipay_private_key=folder / "alipay_private_key.pem",
        alipay_public_key=folder / "alipay_public_key.pem",
    )


def ensure_dev_keys(data_dir: Path) -> DevKeys:
    """Create the dev key pairs once; later starts reuse them."""
    keys = dev_keys(data_dir)
    keys.app_private_key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not keys.app_private_key.exists():
        _write_private(keys.app_private_key, rsa.generate_private_key(65537, 2048))
    if not keys.alipay_private_key.exists():
        alipay = rsa.generate_private_key(65537, 2048)
        _write_private(keys.alipay_private_key, alipay)
        keys.alipay_public_key.write_bytes(
            alipay.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    return keys


def dev_settings(data_dir: Path) -> Settings:
    keys = ensure_dev_keys(data_dir)
    app = AppSettings(
        app_id=DEV_APP_ID,
        alipay_public_key=str(keys.alipay_public_key.resolve()),
        app_private_key=str(keys.app_private_key.resolve()),  # type: ignore[arg-type]
        sign_types=["RSA2", "RSA"],
    )
    storage = StorageSettings(url=f"sqlite:///{(data_dir / 'subgate.db').resolve()}")
    return Settings(apps=[app], storage=storage, base_dir=Path.cwd(), dev_mode=True)


def _write_private(path: Path, key: rsa.RSAPrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
