"""The settings file as a whole: found, read once, validated into the one ``Settings`` object.

Checks that look across sections live here (an app named by a token or a destination must be
configured, names are unique, a destination's secret file is readable).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Self

from pydantic import Field, ValidationError, model_validator

from server.settings.console import ConsoleSettings
from server.settings.destinations import DestinationSettings
from server.settings.environment import environment_layer, merged
from server.settings.secret_files import with_secrets_read
from server.settings.section import Section, SettingsError, warn_if_readable_by_others
from server.settings.sections import (
    AppSettings,
    DeliverySettings,
    OutboxSettings,
    ReconcileSettings,
    RetentionSettings,
    ServerSettings,
    StorageSettings,
    TokenSettings,
    TopAppSettings,
)

CONFIG_ENV = "SUBGATE_CONFIG"
DEFAULT_CONFIG = Path("subgate.toml")


class Settings(Section):
    server: ServerSettings = Field(default_factory=ServerSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    apps: list[AppSettings] = Field(min_length=1)
    tokens: list[TokenSettings] = Field(default_factory=list)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    reconcile: ReconcileSettings = Field(default_factory=ReconcileSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    top_apps: list[TopAppSettings] = Field(default_factory=list)
    destinations: list[DestinationSettings] = Field(default_factory=list)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)
    # Where relative paths in the file are resolved from; the config file's directory.
    base_dir: Path = Field(default_factory=Path.cwd, exclude=True)
    dev_mode: bool = Field(default=False, exclude=True)

    @model_validator(mode="after")
    def _unique_apps(self) -> Self:
        ids = [app.app_id for app in self.apps]
        if len(ids) != len(set(ids)):
            raise ValueError("each app_id may appear only once in [[apps]]")
        for index, token in enumerate(self.tokens):
            unknown = set(token.apps) - set(ids) - {"*"}
            if unknown:
                raise ValueError(f"tokens.{index}.apps names apps that are not configured")
        window = self.server.notify_max_age_seconds + self.server.notify_max_future_seconds
        kept = self.retention.notifications_days * 86400
        if kept and kept <= window:
            raise ValueError(
                "retention.notifications_days must exceed notify_max_age_seconds + "
                "notify_max_future_seconds, or a replay of a pruned notification would be fresh"
            )
        secrets = [token.token.get_secret_value() for token in self.tokens]
        if len(secrets) != len(set(secrets)):
            raise ValueError("each API token may appear only once")
        return self

    @model_validator(mode="after")
    def _unique_top_apps(self) -> Self:
        names = [app.name for app in self.top_apps]
        if len(names) != len(set(names)):
            raise ValueError("each name may appear only once in [[top_apps]]")
        return self

    @model_validator(mode="after")
    def _usable_destinations(self) -> Self:
        names = [destination.name for destination in self.destinations]
        if len(names) != len(set(names)):
            raise ValueError("each name may appear only once in [[destinations]]")
        ids = {app.app_id for app in self.apps}
        for index, destination in enumerate(self.destinations):
            if set(destination.apps or ()) - ids:
                raise ValueError(f"destinations.{index}.apps names apps that are not configured")
            try:
                destination.signing_keys(self.base_dir)
            except ValueError as error:
                raise ValueError(f"destinations.{index}.secret {error}") from None
        return self

    def app(self, app_id: str) -> AppSettings | None:
        return next((app for app in self.apps if app.app_id == app_id), None)


def find_config(explicit: str | None, environ: dict[str, str] | None = None) -> Path | None:
    """``--config``, else ``$SUBGATE_CONFIG``, else ``./subgate.toml``, else None (dev mode)."""
    environ = dict(os.environ) if environ is None else environ
    if explicit:
        return Path(explicit)
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV])
    return DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None


def load_settings(path: Path, environ: Mapping[str, str] | None = None) -> Settings:
    """The settings of the file at ``path``, with the environment's laid over them."""
    warn_if_readable_by_others(path)
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except OSError as error:
        raise SettingsError(f"cannot read config {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise SettingsError(f"config {path} is not valid TOML: {error}") from None
    try:
        return settings_from_mapping(data, base_dir=path.resolve().parent, environ=environ)
    except SettingsError as error:
        raise SettingsError(f"config {path}: {error}") from None


def settings_from_mapping(
    data: Mapping[str, object], *, base_dir: Path, environ: Mapping[str, str] | None = None
) -> Settings:
    """Validated settings from a file's data, the ``SUBGATE_`` variables of ``environ``
    (default: the process's) laid over it and secrets kept in files read."""
    layered = merged(data, environment_layer(Settings, environ))
    try:
        return Settings.model_validate(
            {**with_secrets_read(layered, base_dir), "base_dir": base_dir}
        )
    except ValidationError as error:
        raise SettingsError(_describe(error)) from None
    except ValueError as error:  # a secret file that cannot be read
        raise SettingsError(str(error)) from None


def with_environment(settings: Settings, environ: Mapping[str, str] | None = None) -> Settings:
    """Settings made in code (dev mode's) with the environment's laid over them too."""
    data = settings.model_dump(exclude={"base_dir", "dev_mode"})
    layered = settings_from_mapping(data, base_dir=settings.base_dir, environ=environ)
    return layered.model_copy(update={"dev_mode": settings.dev_mode})


def _describe(error: ValidationError) -> str:
    """Say which key is wrong and why, in one line, without echoing any value (it may be a
    secret)."""
    problems = []
    for problem in error.errors(include_input=False, include_url=False):
        where = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            message = "unknown key (a typo?)"
        problems.append(f"{where}: {message}")
    return "; ".join(problems)
