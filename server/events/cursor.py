"""The feed's cursors: opaque to consumers, stable across restarts.

A cursor is an event's place in the log's order (``EventPosition``), in URL-safe base64 with a
version, so that consumers treat it as a token and the order can change its spelling later.
"""

from __future__ import annotations

import base64
import binascii

from storage.models import EventPosition

_VERSION = "1"
_MAX_LENGTH = 64


def encode_cursor(position: EventPosition) -> str:
    """The cursor a consumer passes back as ``after`` to read on from ``position``."""
    text = f"{_VERSION}.{position.txid}.{position.id}".encode("ascii")
    return base64.urlsafe_b64encode(text).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> EventPosition | None:
    """The position a cursor names, or None when it is not one this service gave out."""
    if not cursor or len(cursor) > _MAX_LENGTH:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    version, _, rest = text.partition(".")
    txid, _, event_id = rest.partition(".")
    if version != _VERSION or not txid.isdigit() or not event_id.isdigit():
        return None
    return EventPosition(int(txid), int(event_id))
