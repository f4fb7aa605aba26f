"""What every platform client answers, classified once and logged the same way.

SUCCESS    the platform did it (a verified answer)
REJECTED   a definite failure: the platform refused and will refuse again
TRANSIENT  worth retrying: the platform was busy, or the call did not get an answer
THROTTLED  a rate limit: nothing was done; retry after its window, never in a tight loop
UNKNOWN    an answer that cannot be trusted: never success, never retried blindly
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import aiohttp

from verify.form import encode_form

_FORM_HEADERS = {"Content-Type": "application/x-www-form-urlencoded"}  # UTF-8, as aiohttp's


class CallOutcome(StrEnum):
    SUCCESS = "success"
    REJECTED = "rejected"
    TRANSIENT = "transient"
    UNKNOWN = "unknown"
    THROTTLED = "throttled"


@dataclass(frozen=True, slots=True)
class CallResult:
    outcome: CallOutcome
    code: str | None = None
    msg: str | None = None
    sub_code: str | None = None
    sub_msg: str | None = None
    error: str | None = None
    node: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A platform's words are stored with the message's outcome; a NUL in them would make
        # that write fail for good on PostgreSQL, so it is kept as U+FFFD on every store.
        for name in ("code", "msg", "sub_code", "sub_msg", "error"):
            value = getattr(self, name)
            if value is not None and "\x00" in value:
                object.__setattr__(self, name, value.replace("\x00", "\ufffd"))


class PlatformClient:
    """What every platform client holds: the shared session, the clock, one timeout per call."""

    def __init__(
        self, session: aiohttp.ClientSession, clock: Callable[[], datetime], timeout: float
    ) -> None:
        self._session = session
        self._clock = clock
        self._timeout = aiohttp.ClientTimeout(total=timeout)


def log_call(
    logger: logging.Logger, call: str, app: str, result: CallResult, context: str = ""
) -> CallResult:
    """One INFO line per call: what, for which app, and how it ended (never a secret)."""
    logger.info(
        "%s app=%s%s outcome=%s code=%s sub_code=%s%s",
        call,
        app,
        context,
        result.outcome.value,
        result.code,
        result.sub_code,
        f" error={result.error}" if result.error else "",
    )
    return result


def text_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def error_name(error: BaseException) -> str:
    return type(error).__name__


async def post_form(
    session: aiohttp.ClientSession,
    url: str,
    form: Mapping[str, str],
    limits: aiohttp.ClientTimeout,
) -> tuple[int, str] | CallResult:
    """POST a signed form: (status, text), or a TRANSIENT result when no answer came back.

    Redirects are never followed: a signed request goes only where it was configured to go.
    """
    try:
        async with session.post(
            url,
            data=encode_form(form),
            headers=_FORM_HEADERS,
            timeout=limits,
            allow_redirects=False,
        ) as response:
            return response.status, await response.text(encoding="utf-8", errors="replace")
    except TimeoutError:
        return CallResult(CallOutcome.TRANSIENT, error="timeout")
    except aiohttp.ClientError as error:
        return CallResult(CallOutcome.TRANSIENT, error=error_name(error))
