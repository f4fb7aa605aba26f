"""What the primary hands a worker it starts: one JSON document on the worker's standard input.

JSON, like the socket wire (``server.workers.wire``), carries plain values only: reading the
orders constructs nothing but the ``Settings`` and the fields the worker's own orders type
declares, each validated. The pipe belongs to the child alone, so the keys a worker verifies and
signs with travel in the clear; ``supervision.worker_settings`` has already left out every other
secret (API tokens, TOP secrets, the database URL).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, SecretStr, TypeAdapter

from server.settings import Settings

Orders = TypeVar("Orders")


def encode_orders(orders: Any) -> bytes:
    """The orders (a dataclass, whose settings, if any, are its ``settings`` field) as one line
    of JSON; its other sections (pydantic models) with their secrets revealed."""
    fields = {field.name: getattr(orders, field.name) for field in dataclasses.fields(orders)}
    for name, value in fields.items():
        if name == "settings":
            fields[name] = _settings_document(value)
        elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
            fields[name] = [_revealed(item.model_dump()) for item in value]
    return json.dumps(fields, default=str).encode("utf-8") + b"\n"


def decode_orders(kind: type[Orders], document: bytes) -> Orders:
    """Orders of type ``kind`` from ``encode_orders``' line; ``ValueError`` on anything else."""
    fields = json.loads(document)
    if not isinstance(fields, dict):
        raise ValueError("worker orders must be a JSON object")
    if "settings" in fields:
        if not isinstance(fields["settings"], dict):
            raise ValueError("worker orders' settings must be a JSON object")
        fields["settings"] = _settings(fields["settings"])
    return TypeAdapter(kind).validate_python(fields)


def _settings_document(settings: Settings) -> dict[str, Any]:
    document: dict[str, Any] = _revealed(settings.model_dump())
    # Excluded from dumps (they are not keys of the file), yet part of what was loaded.
    document.update(base_dir=str(settings.base_dir), dev_mode=settings.dev_mode)
    return document


def _settings(document: dict[str, Any]) -> Settings:
    return Settings.model_validate({**document, "base_dir": Path(document["base_dir"])})


def _revealed(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict):
        return {key: _revealed(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_revealed(item) for item in value]
    return value
