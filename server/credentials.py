"""Turn each configured app's key material into keys, once, at start-up.

A key value is accepted as the Alipay console shows it (bare base64), as PEM text, or as the
path of a file holding either. Anything unusable stops start-up with a message that names the
app and the key, never the value.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from pydantic import SecretStr

from server.settings import (
    DEFAULT_V3_GATEWAY,
    AppSettings,
    Settings,
    SettingsError,
    TopAppSettings,
)
from verify import (
    KeyMaterialError,
    SignType,
    TrustedKey,
    VerificationPolicy,
    cert_sn,
    certificate_public_key,
    is_expired,
    key_fingerprint,
    load_aes_key,
    load_certificates,
    load_private_key,
    load_public_key,
    public_key_base64,
    root_cert_sn,
    verify_chain,
)
from verify.top import TopSignMethod

logger = logging.getLogger(__name__)

_BARE_BASE64 = re.compile(r"^[A-Za-z0-9+/=\s]{64,}$")


@dataclass(frozen=True, slots=True)
class AppCredentials:
    """Everything Subgate needs to verify for, and sign as, one app."""

    app_id: str
    policy: VerificationPolicy
    app_private_key: RSAPrivateKey | None = field(repr=False)
    app_public_key_base64: str | None
    app_cert_sn: str | None
    alipay_root_cert_sn: str | None
    life_account_reply: str
    gateway_url: str
    v3_gateway_url: str = DEFAULT_V3_GATEWAY  # Alipay OpenAPI v3 base; /v3/... is appended
    label_sends_per_week: int = 5
    alipay_cert_sns: tuple[str, ...] = ()  # certificate mode: SNs of the trusted Alipay certs


@dataclass(frozen=True, slots=True)
class TopAppCredentials:
    """One Taobao Open Platform app. The secret and the session never show in a repr or log."""

    name: str
    app_key: str
    app_secret: str = field(repr=False)
    sign_method: TopSignMethod
    gateway_url: str
    session: str | None = field(default=None, repr=False)


def load_credentials(settings: Settings, now: datetime) -> dict[str, AppCredentials]:
    return {app.app_id: _load_app(app, settings, now) for app in settings.apps}


def load_top_credentials(settings: Settings) -> dict[str, TopAppCredentials]:
    """``[[top_apps]]`` by name (names are unique, checked by the settings)."""
    return {app.name: _load_top_app(app) for app in settings.top_apps}


def _load_top_app(app: TopAppSettings) -> TopAppCredentials:
    return TopAppCredentials(
        name=app.name,
        app_key=app.app_key,
        app_secret=app.app_secret.get_secret_value(),
        sign_method=TopSignMethod(app.sign_method),
        gateway_url=app.gateway_url,
        session=None if app.session is None else app.session.get_secret_value(),
    )


def _load_app(app: AppSettings, settings: Settings, now: datetime) -> AppCredentials:
    base = settings.base_dir
    try:
        keys, root_sn = _trusted_keys(app, base, now)
        private_key = _private_key(app.app_private_key, base)
        app_cert_sn = _app_cert_sn(app, private_key, base)
        encrypt_key = None if app.encrypt_key is None else _aes_key(app.encrypt_key)
        policy = VerificationPolicy(
            keys=keys,
            sign_types=frozenset(SignType(value) for value in app.sign_types),
            encrypt_key=encrypt_key,
            require_encryption=app.require_encryption,
            max_age=timedelta(seconds=settings.server.notify_max_age_seconds),
            max_future=timedelta(seconds=settings.server.notify_max_future_seconds),
        )
    except KeyMaterialError as error:
        raise SettingsError(f"app {app.app_id}: {error}") from None
    public_b64 = None if private_key is None else public_key_base64(private_key.public_key())
    return AppCredentials(
        app_id=app.app_id,
        policy=policy,
        app_private_key=private_key,
        app_public_key_base64=public_b64,
        app_cert_sn=app_cert_sn,
        alipay_root_cert_sn=root_sn,
        life_account_reply=app.life_account_reply,
        gateway_url=app.gateway_url,
        v3_gateway_url=app.v3_gateway_url,
        label_sends_per_week=app.label_sends_per_week,
        alipay_cert_sns=tuple(
            key.label.removeprefix("cert:") for key in keys if key.label.startswith("cert:")
        ),
    )


def _trusted_keys(
    app: AppSettings, base: Path, now: datetime
) -> tuple[tuple[TrustedKey, ...], str | None]:
    if not app.cert_paths:
        keys = []
        for index, value in enumerate(app.public_key_values):
            key = load_public_key(read_key_text(value, base, f"alipay_public_key #{index}"))
            keys.append(TrustedKey(label=f"key:{key_fingerprint(key)}", key=key))
        return tuple(keys), None
    assert app.alipay_root_cert_path is not None  # enforced by AppSettings
    root_pem = _read_file(app.alipay_root_cert_path, base, "alipay_root_cert_path")
    roots = load_certificates(root_pem)
    keys = [_certificate_key(path, base, roots, app.app_id, now) for path in app.cert_paths]
    return tuple(keys), root_cert_sn(root_pem)


def _certificate_key(
    path: str, base: Path, roots: list[x509.Certificate], app_id: str, now: datetime
) -> TrustedKey:
    chain = load_certificates(_read_file(path, base, "alipay_cert_path"))
    if not chain:
        raise KeyMaterialError(f"alipay_cert_path {path} holds no certificate")
    verify_chain(chain, roots)
    sn = cert_sn(chain[0])
    if is_expired(chain[0], now):
        logger.warning("app %s: Alipay certificate %s has expired; renew it", app_id, sn)
    return TrustedKey(label=f"cert:{sn}", key=certificate_public_key(chain[0]))


def _private_key(value: SecretStr | None, base: Path) -> RSAPrivateKey | None:
    if value is None:
        return None
    return load_private_key(read_key_text(value.get_secret_value(), base, "app_private_key"))


def _app_cert_sn(app: AppSettings, private_key: RSAPrivateKey | None, base: Path) -> str | None:
    if app.app_cert_path is None:
        return None
    chain = load_certificates(_read_file(app.app_cert_path, base, "app_cert_path"))
    if not chain:
        raise KeyMaterialError(f"app_cert_path {app.app_cert_path} holds no certificate")
    if private_key is not None:
        cert_key = certificate_public_key(chain[0])
        if key_fingerprint(cert_key) != key_fingerprint(private_key.public_key()):
            raise KeyMaterialError("app_cert_path does not certify app_private_key's public key")
    return cert_sn(chain[0])


def _aes_key(value: SecretStr) -> bytes:
    return load_aes_key(value.get_secret_value().strip())


def read_key_text(value: str, base: Path, what: str) -> str:
    """PEM or bare base64 as given; anything else is the path of a file holding either."""
    stripped = value.strip()
    if stripped.startswith("-----BEGIN") or _BARE_BASE64.match(stripped):
        return stripped
    return _read_file(stripped, base, what).decode("utf-8", errors="replace")


def _read_file(path: str, base: Path, what: str) -> bytes:
    resolved = Path(path).expanduser()
    resolved = resolved if resolved.is_absolute() else base / resolved
    try:
        return resolved.read_bytes()
    except OSError as error:
        raise KeyMaterialError(
            f"{what} is neither PEM, bare base64, nor a readable file ({error.strerror})"
        ) from None
