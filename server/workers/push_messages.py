"""What the primary and a push worker (``[delivery] processes``) say to each other, in the wire
format of ``server/workers/wire.py`` (MessagePack plain values, every payload's shape checked).

Primary -> worker: ``[number, "batch", [destination, lease_until, clock_offset, [[webhook_id,
body], ...]]]``: one claimed batch, its payloads built by the primary; times are microseconds
since the epoch, ``clock_offset`` the microseconds the primary's clock is ahead of the worker's
(0 but in tests), so that the worker starts no post that its lease would not cover, by the
primary's clock.

Worker -> primary, per item of a batch, as each attempt ends: ``[number, "answer", [index,
status or nil, latency_ms, error or nil, attempted_at]]``, or ``[number, "late", index]`` for a
post not started because its timeout no longer fitted in the lease; ``[number, "refused", nil]``
for a batch a stopping worker did not take; ``[0, "ready", pid]`` and ``[0, "stopping", nil]``.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pydantic import SecretStr

from server.delivery.batch import Outgoing
from server.delivery.posting import Answer
from server.runtime.log_format import LogFormat
from server.settings import DestinationSettings, EventLoopChoice
from server.workers.plain import (
    BYTES,
    INT,
    NIL,
    OPTIONAL_STR,
    STR,
    Parse,
    array,
    array_of,
    optional,
)
from server.workers.wire import instant

# A batch carries up to a claim's payloads (each a notification's decoded content at most):
# bounded so that a bug cannot make the reader buffer without end.
FRAME_LIMIT_BYTES = 256 * 1024 * 1024

PUSH_REQUESTS: Mapping[str, Parse] = {
    "batch": array(STR, instant, INT, array_of(array(STR, BYTES))),
}
PUSH_ANSWERS: Mapping[str, Parse] = {
    "ready": INT,  # the worker's pid
    "answer": array(INT, optional(INT), INT, OPTIONAL_STR, instant),
    "late": INT,
    "refused": NIL,
    "stopping": NIL,
}


@dataclass(frozen=True)
class PushWorkerOrders:
    """What the primary hands a push worker on its standard input: the destinations it posts to
    (their keys in place of any secret file: the worker reads no file of the primary's), and
    nothing else of the settings (no app key, API token or database URL)."""

    destinations: list[DestinationSettings]
    socket_fd: int
    log_level: int
    log_format: LogFormat
    event_loop: EventLoopChoice


def with_keys(destination: DestinationSettings, keys: Sequence[bytes]) -> DestinationSettings:
    """``destination`` with its signing keys as ``whsec_`` secrets (read from a file if named)."""
    secrets = [SecretStr("whsec_" + base64.b64encode(key).decode()) for key in keys]
    return destination.model_copy(update={"secret": secrets})


def batch_request(
    destination: str, lease_until: int, offset: int, items: Sequence[Outgoing]
) -> tuple[object, ...]:
    return (destination, lease_until, offset, [(item.webhook_id, item.body) for item in items])


def answer_values(index: int, answer: Answer, at: int) -> tuple[object, ...]:
    return (index, answer.status_code, answer.latency_ms, answer.error, at)
