"""Keep request bytes out of aiohttp's own error log.

A request aiohttp's HTTP parser refuses (a bare CR or a NUL in a header, obs-fold, an over-long
line) is logged by ``aiohttp.server`` with the parser's exception, whose message quotes the
offending bytes: an ``Authorization: Bearer ...`` line would put the token in the log. The
filter keeps the fact and the exception's class, and drops the quoted bytes.
"""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError

SERVER_LOGGER = "aiohttp.server"


class ParserErrorRedaction(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else "-"
            record.msg = "refused a malformed HTTP request from %s: %s"
            record.args = (remote, type(error).__name__)
            record.exc_info = None
            record.exc_text = None
        return True


def redact_parser_errors() -> None:
    """Install the filter once on aiohttp's server logger (idempotent)."""
    server_logger = logging.getLogger(SERVER_LOGGER)
    if not any(isinstance(f, ParserErrorRedaction) for f in server_logger.filters):
        server_logger.addFilter(ParserErrorRedaction())
