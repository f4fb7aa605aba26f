"""Standard Webhooks signatures: the three headers a receiver verifies a push with.

``webhook-signature`` is ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``, one per key,
space-separated, so that during a rotation a receiver holding either the old or the new secret
verifies the same request. The timestamp is the attempt's (a receiver refuses stale ones); the
id is the event's, the same on every attempt, so a receiver can drop what it has already seen.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Sequence
from datetime import datetime


def signature(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,...`` signature of the body under one key."""
    signed = b"%s.%d.%s" % (webhook_id.encode(), timestamp, body)
    digest = hmac.digest(key, signed, "sha256")  # one call into OpenSSL
    return "v1," + base64.b64encode(digest).decode()


def webhook_headers(
    keys: Sequence[bytes], webhook_id: str, at: datetime | int, body: bytes
) -> dict[str, str]:
    """The headers of one attempt made at ``at`` (or in that second since the epoch): its id,
    its timestamp and a signature per key."""
    timestamp = at if isinstance(at, int) else int(at.timestamp())
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(key, webhook_id, timestamp, body) for key in keys),
    }
