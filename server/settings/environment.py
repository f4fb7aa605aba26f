"""Settings from the environment: ``SUBGATE_<TABLE>__<KEY>`` overrides ``[table] key`` of the
file (``SUBGATE_SERVER__PORT=8081``, ``SUBGATE_STORAGE__URL=...``), read with pydantic-settings.

Every table of the file (``[server]``, ``[storage]``, ``[outbox]``, ...) can be set this way; a
list-valued key takes JSON (``SUBGATE_OUTBOX__RETRY_BACKOFF_SECONDS='[30, 120]'``). A list of
tables (``[[apps]]``, ``[[tokens]]``, ``[[top_apps]]``, ``[[destinations]]``) is set whole, as a
JSON array of objects (``SUBGATE_TOKENS='[{"token": "/run/secrets/api", "scopes": ["read"]}]'``),
replacing the file's. A variable is merged into the file's data before anything is validated, so
the environment wins and every check still applies; a misspelt key is refused as one in the file
would be.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, get_args, get_origin

from pydantic import BaseModel, create_model
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

ENV_PREFIX = "SUBGATE_"
ENV_DELIMITER = "__"


class _Tables(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter=ENV_DELIMITER, extra="ignore"
    )


class _Variables(EnvSettingsSource):
    """pydantic-settings' reading of the variables, from a given mapping (not only os.environ)."""

    def __init__(self, tables: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(tables)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {name.lower(): value for name, value in self._environ.items()}


def tables_of(model: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """The fields of ``model`` that are tables (one section each, not a list of them)."""
    return {
        name: field.annotation
        for name, field in model.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
    }


def lists_of_tables(model: type[BaseModel]) -> list[str]:
    """The fields of ``model`` that are lists of tables (``[[apps]]`` and the like)."""
    return [
        name
        for name, field in model.model_fields.items()
        if get_origin(field.annotation) is list
        and isinstance(arg := get_args(field.annotation)[0], type)
        and issubclass(arg, BaseModel)
    ]


def environment_layer(
    model: type[BaseModel], environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """What the ``SUBGATE_`` variables set, by table: ``{"server": {"port": "8081"}}``, and
    whole lists of tables: ``{"tokens": [{...}]}``."""
    tables, lists = tables_of(model), lists_of_tables(model)
    fields: Any = {name: (table | None, None) for name, table in tables.items()}
    fields |= {name: (list[dict[str, Any]] | None, None) for name in lists}
    shape = create_model("SubgateEnvironment", __base__=_Tables, **fields)
    found = _Variables(shape, os.environ if environ is None else environ)()
    kept = {name: value for name, value in found.items() if name in tables and value}
    return kept | {name: found[name] for name in lists if found.get(name) is not None}


def merged(base: Mapping[str, Any], layer: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``layer`` laid over it, table by table (a key of ``layer`` wins)."""
    result = dict(base)
    for name, value in layer.items():
        below = result.get(name)
        if isinstance(value, Mapping) and isinstance(below, Mapping):
            result[name] = merged(below, value)
        else:
            result[name] = value
    return result
