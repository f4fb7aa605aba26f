"""What every section of the settings file shares: frozen, unknown keys refused, and the one
error a configuration that cannot be used raises."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

from pydantic import BaseModel, ConfigDict

logger = logging.getLogger(__name__)


class SettingsError(ValueError):
    """The configuration cannot be used; the message says which key and why (never a secret)."""


class Section(BaseModel):
    """A table of the settings file: a typo in a key is an error, never a silent default."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def warn_if_readable_by_others(path: Path) -> None:
    """A file holding keys, tokens or secrets should be readable by its owner alone."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return  # whoever reads the file reports it unreadable
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning(
            "%s is readable by other users (mode %o) and holds secrets; chmod 600 it",
            path,
            stat.S_IMODE(mode),
        )
