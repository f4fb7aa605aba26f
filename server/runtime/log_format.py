"""Where and how the process logs: to stderr, as text for a terminal or as one JSON object per
line for a log collector (``--log-format json``, with ``python-json-logger``).

The format changes nothing of what is logged: the same records, after the same redaction
(``server.runtime.log_redaction`` filters aiohttp's records, whichever formatter writes them).
"""

from __future__ import annotations

import logging
from typing import Literal

from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# A JSON line's keys: time (ISO 8601, UTC), level, logger, pid (the primary's or a worker's)
# and message (exc_info when there is one).
JSON_FIELDS = ("levelname", "name", "process", "message")
JSON_NAMES = {"levelname": "level", "name": "logger", "process": "pid"}


def formatter_for(log_format: LogFormat) -> logging.Formatter:
    """The formatter of ``log_format``."""
    if log_format == "json":
        return JsonFormatter(
            list(JSON_FIELDS), rename_fields=JSON_NAMES, timestamp="time", json_ensure_ascii=False
        )
    return logging.Formatter(TEXT_FORMAT)


def configure_logging(level: str | int, log_format: LogFormat = "text") -> None:
    """Every record at ``level`` (a name or a number) or above to stderr, in ``log_format``."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter_for(log_format))
    number = getattr(logging, level) if isinstance(level, str) else level
    logging.basicConfig(level=number, handlers=[handler], force=True)


def active_log_format() -> LogFormat:
    """The format this process logs in: what a worker process it starts is told to use, as
    it is told the level."""
    handlers = logging.getLogger().handlers
    return "json" if any(isinstance(h.formatter, JsonFormatter) for h in handlers) else "text"
