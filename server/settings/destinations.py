"""``[[destinations]]``: where events are pushed, signed with whose secret, and how patiently.

A destination names the URL of one of the merchant's services, its Standard Webhooks secret (one,
several during a rotation, or the path of a file holding them), which events it takes (globs on
the type and on a notification's kind, and the apps) and its retry schedule. Everything is
checked at start-up: a destination that cannot work stops Subgate before it listens.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
from pathlib import Path
from typing import Self
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from server.settings.secret_files import read_secret_text
from server.settings.section import Section
from storage.models import EventType

SECRET_PREFIX = "whsec_"  # noqa: S105 (the prefix every secret shares, not a secret)
# The Standard Webhooks spec: a secret's key is 24 to 64 random bytes.
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64
EVENT_TYPES = tuple(event_type.value for event_type in EventType)


def decode_secret(text: str) -> bytes:
    """The key of a ``whsec_<base64>`` secret; a ``ValueError`` that never repeats the text."""
    if not text.startswith(SECRET_PREFIX):
        raise ValueError("a secret must start with whsec_")
    body = text[len(SECRET_PREFIX) :].strip()
    try:
        key = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except binascii.Error:
        raise ValueError("a secret must be whsec_ followed by base64") from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise ValueError(
            f"a secret's key must be {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes, "
            f"this one has {len(key)}"
        )
    return key


def read_secret_file(path: Path) -> list[str]:
    """The secrets a file holds (read as every secret file is, ``secret_files``):
    whitespace-separated, lines starting with ``#`` ignored."""
    try:
        text = read_secret_text(path)
    except ValueError as error:
        raise ValueError(
            f"is neither a whsec_ secret nor a readable secret file ({error})"
        ) from None
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    secrets = " ".join(lines).split()
    if not secrets:
        raise ValueError("names a file that holds no secret")
    return secrets


class DestinationSettings(Section):
    """One of the merchant's services that events are pushed to."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)
    url: str
    secret: SecretStr | list[SecretStr]
    apps: list[str] | None = Field(default=None, min_length=1)
    events: list[str] | None = Field(default=None, min_length=1)
    kinds: list[str] | None = Field(default=None, min_length=1)
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    retry_initial_seconds: float = Field(default=5.0, gt=0, le=86400)
    retry_max_seconds: float = Field(default=3600.0, gt=0, le=7 * 86400)
    give_up_after_seconds: float = Field(default=259200.0, gt=0, le=366 * 86400)
    max_response_bytes: int = Field(default=65536, ge=0, le=16 * 1024 * 1024)
    concurrency: int = Field(default=8, ge=1, le=256)
    poll_seconds: float = Field(default=1.0, gt=0, le=300)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        # The message never repeats the URL: it may carry credentials.
        try:
            parts = urlsplit(url)
            host, _ = parts.hostname, parts.port  # a port out of range raises here
        except ValueError:
            raise ValueError("must be an http:// or https:// URL") from None
        if parts.scheme not in ("http", "https") or not host:
            raise ValueError("must be an http:// or https:// URL with a host")
        return url

    @field_validator("secret")
    @classmethod
    def _secrets_well_formed(cls, secret: SecretStr | list[SecretStr]) -> object:
        if isinstance(secret, list):
            if not secret:
                raise ValueError("a list of secrets must hold at least one")
            for item in secret:
                decode_secret(item.get_secret_value())
        elif secret.get_secret_value().startswith(SECRET_PREFIX):
            decode_secret(secret.get_secret_value())
        return secret

    @field_validator("events")
    @classmethod
    def _globs_match_event_types(cls, events: list[str] | None) -> list[str] | None:
        for glob in events or ():
            if not any(fnmatch.fnmatchcase(known, glob) for known in EVENT_TYPES):
                raise ValueError(
                    f"the glob {glob!r} matches no event type (one of {', '.join(EVENT_TYPES)})"
                )
        return events

    @model_validator(mode="after")
    def _retry_bounds(self) -> Self:
        if self.retry_max_seconds < self.retry_initial_seconds:
            raise ValueError("retry_max_seconds must not be below retry_initial_seconds")
        return self

    @property
    def shown_url(self) -> str:
        """The URL as an answer may show it: without user, password, query or fragment (any of
        them may carry a credential)."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        netloc = host if parts.port is None else f"{host}:{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    def signing_keys(self, base_dir: Path) -> tuple[bytes, ...]:
        """Every key to sign with, in the order given: the secrets as written, or read from the
        file the one value names (relative to the config file's directory)."""
        if isinstance(self.secret, list):
            texts = [item.get_secret_value() for item in self.secret]
        elif self.secret.get_secret_value().startswith(SECRET_PREFIX):
            texts = [self.secret.get_secret_value()]
        else:
            texts = read_secret_file(base_dir / Path(self.secret.get_secret_value()).expanduser())
        return tuple(decode_secret(text) for text in texts)
