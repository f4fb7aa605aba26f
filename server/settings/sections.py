"""The sections of the settings file other than ``[[destinations]]``, each a frozen model that
refuses unknown keys.

Key material is kept as given (base64, PEM text or a file path) and turned into keys by
``credentials``; secrets are ``SecretStr`` so that they never show in a repr, a log line or an
error.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator

from server.settings.section import Section
from storage import DEFAULT_READ_MMAP_MB, POSTGRES_SCHEMES
from storage.sqlite.connection import path_from_url

DEFAULT_GATEWAY = "https://openapi.alipay.com/gateway.do"
DEFAULT_V3_GATEWAY = "https://openapi.alipay.com"
DEFAULT_TOP_GATEWAY = "https://eco.taobao.com/router/rest"

SignTypeName = Literal["RSA2", "RSA"]
EventLoopChoice = Literal["auto", "asyncio", "uvloop"]
AppId = Annotated[str, Field(pattern=r"^[0-9A-Za-z_-]{1,32}$")]


def _rsa2_only() -> list[SignTypeName]:
    return ["RSA2"]


class ServerSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    max_body_bytes: int = Field(default=65536, ge=1024, le=16 * 1024 * 1024)
    notify_max_age_seconds: int = Field(default=172800, ge=60)
    notify_max_future_seconds: int = Field(default=300, ge=0, le=3600)
    refusal_flush_seconds: float = Field(default=5.0, gt=0, le=3600)
    event_loop: EventLoopChoice = "auto"
    # Notification intake on more cores: this many worker processes serve /alipay/notify on
    # intake_port and hand verified notifications to this process, which alone writes the store.
    intake_workers: int = Field(default=0, ge=0, le=64)
    intake_port: int | None = Field(default=None, ge=1, le=65535)
    # Slow and idle clients (server/web/connection_guard.py): the headers, then the body, of a
    # request must each arrive within read_timeout_seconds; an idle connection closes after
    # keepalive_timeout_seconds; at most max_connections are open (none: from the file limit).
    read_timeout_seconds: float = Field(default=15.0, gt=0, le=600)
    keepalive_timeout_seconds: float = Field(default=15.0, gt=0, le=3600)
    max_connections: int | None = Field(default=None, ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _intake_port_with_workers(self) -> Self:
        if self.intake_workers and self.intake_port is None:
            raise ValueError("intake_workers needs intake_port (the port the workers share)")
        if self.intake_port is not None and not self.intake_workers:
            raise ValueError("intake_port is only served by intake_workers; set both or neither")
        if self.intake_port is not None and self.intake_port == self.port:
            raise ValueError("intake_port must differ from port")
        return self


class StorageSettings(Section):
    url: str = "sqlite:///./data/subgate.db"
    synchronous: Literal["NORMAL", "FULL", "EXTRA"] = "FULL"
    busy_timeout_ms: int = Field(default=5000, ge=0, le=600_000)
    # SQLite only: how much of the file the read-only connections map into memory; 0: none.
    read_mmap_mb: int = Field(default=DEFAULT_READ_MMAP_MB, ge=0, le=1_048_576)
    # PostgreSQL only: the connection pool of each process.
    pool_min: int = Field(default=1, ge=0, le=1000)
    pool_max: int = Field(default=10, ge=1, le=1000)

    @field_validator("url")
    @classmethod
    def _a_store_subgate_knows(cls, url: str) -> str:
        # The message never repeats the URL: it may carry a password.
        if url.startswith("sqlite:"):
            path_from_url(url)  # its ValueError says what a SQLite URL looks like
        elif not url.startswith(POSTGRES_SCHEMES):
            raise ValueError("must be sqlite:///path/to/file.db or postgresql://user@host/db")
        return url

    @model_validator(mode="after")
    def _pool_bounds(self) -> Self:
        if self.pool_min > self.pool_max:
            raise ValueError("pool_min must not exceed pool_max")
        return self


class OutboxSettings(Section):
    call_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    retry_backoff_seconds: list[float] = Field(
        default_factory=lambda: [30.0, 120.0, 600.0, 1800.0, 7200.0], max_length=20
    )
    poll_seconds: float = Field(default=1.0, gt=0, le=3600)
    lease_seconds: float = Field(default=60.0, gt=0, le=3600)
    batch_size: int = Field(default=50, ge=1, le=1000)
    throttle_delay_seconds: float = Field(default=600.0, ge=0, le=86400)
    # Worker processes making the classic gateway's calls (sign, POST, verify); 0: in the primary.
    call_processes: int = Field(default=0, ge=0, le=16)

    @model_validator(mode="after")
    def _lease_outlasts_a_call(self) -> Self:
        # An attempt still `sending` when its lease ends is taken for one whose process died
        # mid-call and is marked `unknown`; a lease shorter than a call would do that to live
        # calls. (A first attempt's lease starts when its reservation is requested.)
        if self.lease_seconds <= self.call_timeout_seconds:
            raise ValueError(
                "lease_seconds must be greater than call_timeout_seconds: an attempt still "
                "in flight when its lease ends is marked unknown"
            )
        return self


class DeliverySettings(Section):
    # Worker processes that post the pushes to [[destinations]] (sign, write, read the answer);
    # 0: the service's own process posts them. The store, the claims and the verdicts stay there.
    # One by default: a push then costs the event loop about half (bench/README.md).
    processes: int = Field(default=1, ge=0, le=16)


class RetentionSettings(Section):
    notifications_days: float = Field(default=0.0, ge=0)  # 0: keep every notification forever
    prune_interval_seconds: float = Field(default=3600.0, gt=0)


class ReconcileSettings(Section):
    interval_seconds: float = Field(default=0.0, ge=0)  # 0: the periodic job is off
    users_per_run: int = Field(default=100, ge=1, le=100_000)


class TemplateSettings(Section):
    id: str = Field(pattern=r"^[0-9A-Za-z_-]{1,64}$")
    kind: Literal["one_time", "long_term"]
    keywords: list[str] = Field(default_factory=list, max_length=20)
    page: str | None = None


class TokenSettings(Section):
    token: SecretStr = Field(min_length=16)
    apps: list[str] = Field(min_length=1)  # app ids, or "*" for every configured app
    scopes: list[Literal["read", "write", "send"]] = Field(min_length=1)


class AppSettings(Section):
    app_id: AppId
    alipay_public_key: str | None = None
    alipay_public_keys: list[str] = Field(default_factory=list)
    alipay_cert_path: str | list[str] | None = None
    alipay_root_cert_path: str | None = None
    app_cert_path: str | None = None
    app_private_key: SecretStr | None = None
    encrypt_key: SecretStr | None = None
    require_encryption: bool = False
    sign_types: list[SignTypeName] = Field(default_factory=_rsa2_only, min_length=1)
    gateway_url: str = DEFAULT_GATEWAY
    life_account_reply: Literal["ack", "success"] = "ack"
    templates: list[TemplateSettings] = Field(default_factory=list)
    verify_with_platform: bool = False
    v3_gateway_url: str = DEFAULT_V3_GATEWAY
    label_sends_per_week: int = Field(default=5, ge=1)

    @model_validator(mode="after")
    def _one_trust_mode(self) -> Self:
        has_key = self.alipay_public_key is not None or bool(self.alipay_public_keys)
        has_cert = self.alipay_cert_path is not None
        if has_key == has_cert:
            raise ValueError(
                "give either alipay_public_key(s) (public-key mode) "
                "or alipay_cert_path (certificate mode), not both and not neither"
            )
        if has_cert and self.alipay_root_cert_path is None:
            raise ValueError("certificate mode needs alipay_root_cert_path")
        if self.require_encryption and self.encrypt_key is None:
            raise ValueError("require_encryption needs encrypt_key")
        ids = [template.id for template in self.templates]
        if len(ids) != len(set(ids)):
            raise ValueError("each template id may appear only once per app")
        return self

    @property
    def public_key_values(self) -> list[str]:
        first = [self.alipay_public_key] if self.alipay_public_key is not None else []
        return first + self.alipay_public_keys

    @property
    def cert_paths(self) -> list[str]:
        paths = self.alipay_cert_path
        return [] if paths is None else [paths] if isinstance(paths, str) else paths


class TopAppSettings(Section):
    """One Taobao Open Platform app (TOP router calls)."""

    name: str = Field(pattern=r"^[0-9A-Za-z_-]{1,64}$")
    app_key: str = Field(pattern=r"^[0-9A-Za-z_-]{1,64}$")
    app_secret: SecretStr = Field(min_length=1)
    sign_method: Literal["md5", "hmac", "hmac-sha256"] = "hmac-sha256"
    gateway_url: str = DEFAULT_TOP_GATEWAY
    session: SecretStr | None = None
