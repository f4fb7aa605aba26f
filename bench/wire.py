"""python -m bench.wire [--number N] [--repeat R]

The worker wire alone, in one process: what one relayed notification costs to encode and to read
back (``server/workers/wire.py``), without sockets or event loops (bench/README.md, "the worker
wire as MessagePack"). Each case prints the best of ``--repeat`` timings of about ``--number``
messages, per message. The notification is the bench's own ~1 KB ``trade_status_sync``
(``bench/bodies.py``) with a signature-sized ``sign``.
"""

from __future__ import annotations

import argparse
import platform
import timeit
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import quote_plus

from bench.bodies import notification
from server.workers.wire import (
    RELAY_REQUESTS,
    FrameReader,
    encode_frame,
    parse_payload,
    record_values,
    relay_answer,
)
from storage.models import NotificationRecord

LIMIT = 2 * 1024 * 1024
BATCH = 64  # frames of one event-loop turn, read at once


def typical_record() -> NotificationRecord:
    fields = notification(7, "2021000000000001", datetime(2026, 12, 5, tzinfo=UTC))
    wire = {**fields, "sign_type": "RSA2", "sign": "A" * 344}  # an RSA-2048 signature's length
    body = "&".join(f"{k}={quote_plus(v)}" for k, v in wire.items()).encode("ascii")
    return NotificationRecord(
        app_id=fields["app_id"],
        dedupe_key=fields["notify_id"],
        kind="trade_status_sync",
        handler="store_only",
        raw_body=body,
        charset="utf-8",
        sign_type="RSA2",
        rule="V1",
        key_label="key:sha256:0123456789abcdef",
        occurred_at=datetime(2026, 12, 5, 1, tzinfo=UTC),
        received_at=datetime(2026, 12, 5, 1, 0, 1, tzinfo=UTC),
    )


def cases(record: NotificationRecord) -> dict[str, tuple[Callable[[], object], int]]:
    """Each case and the messages one call of it moves; a reader lasts, as a connection's does."""
    request = (12345, "keep", (record_values(record), ()))
    batch = b"".join(encode_frame(request) for _ in range(BATCH))
    reader = FrameReader(LIMIT)

    def frame_only() -> object:
        return reader.feed(encode_frame(request))

    def keep_request() -> object:
        [(_, op, payload)] = reader.feed(encode_frame((12345, "keep", (record_values(record), ()))))
        return parse_payload(RELAY_REQUESTS, op, payload)

    def keep_answer() -> object:
        [(_, ok, value)] = reader.feed(encode_frame((12345, True, (678, False))))
        return relay_answer("keep", ok, value)

    def read_a_batch() -> object:
        return [parse_payload(RELAY_REQUESTS, op, p) for _, op, p in reader.feed(batch)]

    return {
        "frame: encode + read (record values given)": (frame_only, 1),
        "keep request: record -> frame -> checked record": (keep_request, 1),
        "keep answer: encode + read + check": (keep_answer, 1),
        f"{BATCH} keep requests in one read, checked": (read_a_batch, BATCH),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.wire")
    parser.add_argument("--number", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    record = typical_record()
    size = len(encode_frame((12345, "keep", (record_values(record), ()))))
    print(f"Python {platform.python_version()}; a keep request frame is {size} bytes")
    for name, (case, messages) in cases(record).items():
        calls = max(args.number // messages, 1)
        best = min(timeit.repeat(case, number=calls, repeat=args.repeat))
        print(f"{best / calls / messages * 1e6:8.2f} µs/message  {name}")


if __name__ == "__main__":
    main()
