"""The one typed settings object, loaded once from a TOML file and the environment.

Every key is documented in docs/settings.md (a test keeps the two in step). The sections live in
``sections`` (and ``[[destinations]]`` in ``destinations``); ``file`` holds ``Settings`` and its
loading, ``environment`` the ``SUBGATE_`` variables laid over the file and ``secret_files`` the
one rule for secrets kept in files. Every public name is exported here, so a reader imports
from ``server.settings`` alone.
"""

from server.settings.console import ConsoleSettings
from server.settings.destinations import DestinationSettings, decode_secret
from server.settings.file import (
    CONFIG_ENV,
    DEFAULT_CONFIG,
    Settings,
    find_config,
    load_settings,
    settings_from_mapping,
    with_environment,
)
from server.settings.section import Section, SettingsError
from server.settings.sections import (
    DEFAULT_GATEWAY,
    DEFAULT_TOP_GATEWAY,
    DEFAULT_V3_GATEWAY,
    AppId,
    AppSettings,
    DeliverySettings,
    EventLoopChoice,
    OutboxSettings,
    ReconcileSettings,
    RetentionSettings,
    ServerSettings,
    SignTypeName,
    StorageSettings,
    TemplateSettings,
    TokenSettings,
    TopAppSettings,
)

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG",
    "DEFAULT_GATEWAY",
    "DEFAULT_TOP_GATEWAY",
    "DEFAULT_V3_GATEWAY",
    "AppId",
    "AppSettings",
    "ConsoleSettings",
    "DeliverySettings",
    "DestinationSettings",
    "EventLoopChoice",
    "OutboxSettings",
    "ReconcileSettings",
    "RetentionSettings",
    "Section",
    "ServerSettings",
    "Settings",
    "SettingsError",
    "SignTypeName",
    "StorageSettings",
    "TemplateSettings",
    "TokenSettings",
    "TopAppSettings",
    "decode_secret",
    "find_config",
    "load_settings",
    "settings_from_mapping",
    "with_environment",
]
