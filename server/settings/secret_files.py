"""Secrets kept in files (container and systemd secrets): the one rule every secret setting
follows.

A secret setting holds the secret itself, or the path of a file that holds it: a value that
starts with ``/``, ``./``, ``../`` or ``~`` names a file, read when the settings load (relative
to the config file's directory), its surrounding whitespace dropped. A secret with a shape of
its own is taken as itself whenever it has that shape: a ``whsec_`` webhook secret, a database
URL (``scheme://``), an AES key (base64 of 16, 24 or 32 bytes); ``[[destinations]]`` ``secret``
and ``[[apps]]`` ``app_private_key`` also take a bare relative path, as they always have. A file
readable by other users is warned about; one that cannot be read stops start-up, naming the key
and the path, never the content.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from server.settings.section import warn_if_readable_by_others

PATH_STARTS = ("/", "./", "../", "~")
AES_KEY_BYTES = (16, 24, 32)
Shape = Callable[[str], bool]


def names_a_file(value: str) -> bool:
    """Whether a secret setting's value is the path of a file rather than the secret."""
    return value.startswith(PATH_STARTS)


def is_aes_key(value: str) -> bool:
    """Base64 of an AES-128, -192 or -256 key."""
    try:
        return len(base64.b64decode(value.strip(), validate=True)) in AES_KEY_BYTES
    except (binascii.Error, ValueError):
        return False


def is_url(value: str) -> bool:
    return "://" in value or value.startswith("sqlite:")


def read_secret_text(path: Path) -> str:
    """A secret file's text, stripped; ``ValueError`` (naming the path only) if it cannot be
    read or is empty."""
    warn_if_readable_by_others(path)
    try:
        text = path.read_text("utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        why = getattr(error, "strerror", None) or "not UTF-8 text"
        raise ValueError(f"cannot read the secret file {path}: {why}") from None
    if not text:
        raise ValueError(f"the secret file {path} holds no secret")
    return text


def secret_value(value: str, base_dir: Path, shape: Shape | None = None) -> str:
    """The secret a setting's value gives: itself, or the text of the file it names."""
    if (shape is not None and shape(value)) or not names_a_file(value):
        return value
    return read_secret_text(base_dir / Path(value).expanduser())


# Where the secrets are in the settings' data: (table or list of tables, key, shape).
SECRET_KEYS: tuple[tuple[str, str, Shape | None], ...] = (
    ("storage", "url", is_url),
    ("tokens", "token", None),
    ("apps", "encrypt_key", is_aes_key),
    ("top_apps", "app_secret", None),
    ("top_apps", "session", None),
)


def with_secrets_read(data: Mapping[str, Any], base_dir: Path) -> dict[str, Any]:
    """The settings' data with every secret that names a file replaced by the file's text."""
    result = dict(data)
    for table, key, shape in SECRET_KEYS:
        found = result.get(table)
        if isinstance(found, Mapping):
            result[table] = _read(found, key, shape, base_dir, table)
        elif isinstance(found, list):
            result[table] = [
                _read(item, key, shape, base_dir, f"{table}.{index}")
                if isinstance(item, Mapping)
                else item
                for index, item in enumerate(found)
            ]
    return result


def _read(
    item: Mapping[str, Any], key: str, shape: Shape | None, base_dir: Path, where: str
) -> Mapping[str, Any]:
    value = item.get(key)
    if not isinstance(value, str):
        return item
    try:
        return {**item, key: secret_value(value, base_dir, shape)}
    except ValueError as error:
        raise ValueError(f"{where}.{key}: {error}") from None
