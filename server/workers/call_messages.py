"""What the primary and a call worker say to each other: the orders a worker starts with, a call
request, and a ``CallResult`` as plain values (``wire.CALL_REQUESTS`` and ``wire.CALL_RESULT`` give
their shapes)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from server.platforms.calls import CallOutcome, CallResult
from server.runtime.log_format import LogFormat
from server.settings import EventLoopChoice, Settings
from server.workers.wire import (
    CALL_RESULT,
    RelayError,
    micros,
)

FRAME_LIMIT_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class CallWorkerOrders:
    """What the primary hands a call worker on its standard input."""

    settings: Settings
    socket_fd: int
    log_level: int
    log_format: LogFormat = "text"

    @property
    def event_loop(self) -> EventLoopChoice:
        return self.settings.server.event_loop


def call_request(
    app_id: str, method: str, biz_content: Mapping[str, Any], now: datetime
) -> tuple[Any, ...]:
    """The shape of ``CALL_REQUESTS`` (``server/workers/wire.py``): ``biz_content`` as the JSON
    it is signed as (a str enum becomes its value), the time as microseconds."""
    plain = json.loads(json.dumps(biz_content, ensure_ascii=False))
    return (app_id, method, plain, micros(now))


def result_values(result: CallResult) -> tuple[Any, ...]:
    return (
        result.outcome.value,
        result.code,
        result.msg,
        result.sub_code,
        result.sub_msg,
        result.error,
        dict(result.node),
    )


def result_from_values(values: object) -> CallResult:
    """A worker's answer, checked field by field: anything else is not the protocol."""
    return _result(CALL_RESULT(values))


def _result(fields: dict[str, Any]) -> CallResult:
    """A ``CALL_RESULT`` already checked, whose outcome must be one of ours."""
    outcome = fields.pop("outcome")
    try:
        kind = CallOutcome(outcome)
    except ValueError:
        raise RelayError(f"unknown call outcome {outcome!r}") from None
    return CallResult(kind, **fields)
