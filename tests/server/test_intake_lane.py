"""The notification lane (server/web/lane.py): a connection that begins with ``POST /alipay/notify``
is parsed by httptools and answered by the gateway, and whatever else comes on it is aiohttp's.

Raw sockets on ``serve_guarded`` (``run.py serve``'s site), so every byte on the wire is the
test's: answers are read off the stream one by one, in order. The lane answers without aiohttp's
``Server`` header, which is how a test tells which side answered.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import socket
import threading
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from server.appkeys import STORE
from server.intake.keys import STORE_SINK
from server.intake.lane_route import NotifyLane
from server.settings import Settings
from tests.oracle import form_body
from tests.server.api_client import api_settings
from tests.server.conftest import APP_ID, OTHER_APP_ID, StartGateway
from tests.server.guarded import (
    DEADLINE_SECONDS,
    Answer,
    answers_to,
    close,
    connect,
    read_answer,
    read_to_end,
    request_head,
    serve_guarded,
    until,
)
from tests.server.guarded_server import GuardedTestServer
from tests.server.notifications import signed, trade_fields

FORM = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}


def notification() -> bytes:
    return form_body(signed(trade_fields()))


def post(body: bytes, path: str = "/alipay/notify", **headers: str) -> bytes:
    fields = {**FORM, "Content-Length": str(len(body)), **headers}
    return request_head("POST", path, fields) + body


async def answer_then_close(port: int, data: bytes) -> Answer:
    """The one answer to ``data``, after which the server closes the connection."""
    reader, writer = await connect(port)
    try:
        writer.write(data)
        answer = await read_answer(reader)
        assert await asyncio.wait_for(reader.read(), DEADLINE_SECONDS) == b""
    finally:
        await close(writer)
    return answer


def settings(tmp_path: Path, **server: object) -> Settings:
    return api_settings(tmp_path, **server)


async def stored(app: web.Application) -> int:
    return await app[STORE].count_notifications()


async def test_a_notification_is_answered_on_the_lane_and_stored(tmp_path: Path) -> None:
    async with serve_guarded(settings(tmp_path)) as served:
        [answer] = await answers_to(served.port, post(notification()), 1)
        assert (answer.status, answer.body, answer.from_lane) == (200, b"success", True)
        assert answer.headers["content-type"] == "text/plain"
        assert answer.headers["content-length"] == "7" and "date" in answer.headers
        assert await stored(served.app) == 1


async def test_pipelined_requests_are_answered_in_order_and_the_rest_goes_to_aiohttp(
    tmp_path: Path,
) -> None:
    """Two notifications, a health check and a third notification in one write: four answers in
    the order asked; from the health check on, aiohttp serves the connection."""
    bodies = [notification() for _ in range(3)]
    health = request_head("GET", "/healthz", {})
    data = post(bodies[0]) + post(bodies[1]) + health + post(bodies[2])
    async with serve_guarded(settings(tmp_path)) as served:
        answers = await answers_to(served.port, data, 4)
        assert [a.status for a in answers] == [200, 200, 200, 200]
        assert [a.body for a in answers[:2]] == [b"success", b"success"]
        assert answers[3].body == b"success"
        assert [a.from_lane for a in answers] == [True, True, False, False]
        assert b"status" in answers[2].body  # the health check's own answer
        assert await stored(served.app) == 3


async def test_a_request_after_a_notification_on_the_same_connection_is_aiohttps(
    tmp_path: Path,
) -> None:
    """One request at a time, as a pooling client sends them: the API still answers, with its
    JSON error envelope, on a connection that began with a notification."""
    async with serve_guarded(settings(tmp_path)) as served:
        reader, writer = await connect(served.port)
        try:
            writer.write(post(notification()))
            first = await read_answer(reader)
            writer.write(request_head("GET", "/v1/apps/x/messages", {}))
            second = await read_answer(reader)
            writer.write(post(notification()))
            third = await read_answer(reader)
        finally:
            await close(writer)
        assert (first.status, first.from_lane) == (200, True)
        assert second.status == 401 and b'"unauthorized"' in second.body
        assert (third.status, third.body, third.from_lane) == (200, b"success", False)
        assert await stored(served.app) == 2


async def test_a_chunked_notification_is_read_whole(tmp_path: Path) -> None:
    body = notification()
    half = len(body) // 2
    chunks = b"%x\r\n%b\r\n%x\r\n%b\r\n0\r\n\r\n" % (
        half,
        body[:half],
        len(body) - half,
        body[half:],
    )
    head = request_head("POST", "/alipay/notify", {**FORM, "Transfer-Encoding": "chunked"})
    async with serve_guarded(settings(tmp_path)) as served:
        [answer] = await answers_to(served.port, head + chunks, 1)
        assert (answer.status, answer.body, answer.from_lane) == (200, b"success", True)


async def test_a_body_declared_too_large_is_refused_before_it_is_sent(tmp_path: Path) -> None:
    async with serve_guarded(settings(tmp_path, max_body_bytes=4096)) as served:
        head = request_head("POST", "/alipay/notify", {**FORM, "Content-Length": "5000"})
        answer = await answer_then_close(served.port, head)
        assert (answer.status, answer.body) == (413, b"fail")
        assert answer.headers["x-subgate-error"] == "too_large"
        assert answer.headers["connection"] == "close"
        assert served.error_answers("too_large") == 1


async def test_a_chunked_body_past_the_limit_is_refused(tmp_path: Path) -> None:
    head = request_head("POST", "/alipay/notify", {**FORM, "Transfer-Encoding": "chunked"})
    chunk = b"a" * 3000
    data = head + b"%x\r\n%b\r\n" % (len(chunk), chunk) * 2
    async with serve_guarded(settings(tmp_path, max_body_bytes=4096)) as served:
        [answer] = await answers_to(served.port, data, 1)
        assert (answer.status, answer.headers["x-subgate-error"]) == (413, "too_large")
        assert await stored(served.app) == 0


async def test_expect_continue_is_answered_before_the_body(tmp_path: Path) -> None:
    body = notification()
    head = request_head(
        "POST",
        "/alipay/notify",
        {**FORM, "Content-Length": str(len(body)), "Expect": "100-continue"},
    )
    async with serve_guarded(settings(tmp_path)) as served:
        reader, writer = await connect(served.port)
        try:
            writer.write(head)
            interim = await read_answer(reader)
            writer.write(body)
            final = await read_answer(reader)
        finally:
            await close(writer)
        assert interim.status == 100
        assert (final.status, final.body) == (200, b"success")


async def test_an_http_1_0_clients_expect_continue_is_ignored(tmp_path: Path) -> None:
    """RFC 9110: an HTTP/1.0 client would take an interim 100 for its answer."""
    body = notification()
    head = (
        "POST /alipay/notify HTTP/1.0\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: {FORM['Content-Type']}\r\nContent-Length: {len(body)}\r\n"
        "Expect: 100-continue\r\n\r\n"
    ).encode()
    async with serve_guarded(settings(tmp_path)) as served:
        answer = await answer_then_close(served.port, head + body)
        assert (answer.status, answer.body, answer.from_lane) == (200, b"success", True)


async def test_a_malformed_request_is_refused_and_the_connection_closed(tmp_path: Path) -> None:
    data = b"POST /alipay/notify HTTP/1.1\r\nNo colon here\r\n\r\n"
    async with serve_guarded(settings(tmp_path)) as served:
        answer = await answer_then_close(served.port, data)
        assert (answer.status, answer.body) == (400, b"fail")
        assert answer.headers["x-subgate-error"] == "malformed_request"


async def test_refusals_keep_the_connection_for_the_next_notification(tmp_path: Path) -> None:
    """A refused notification (its signature, its media type) is an answer like any other."""
    forged = form_body(trade_fields())  # no sign at all
    wrong_type = request_head(
        "POST", "/alipay/notify", {"Content-Type": "text/plain", "Content-Length": "2"}
    )
    data = post(forged) + wrong_type + b"ab" + post(notification())
    async with serve_guarded(settings(tmp_path)) as served:
        answers = await answers_to(served.port, data, 3)
        assert [(a.status, a.headers.get("x-subgate-error")) for a in answers] == [
            (400, "malformed"),
            (415, "unsupported_media_type"),
            (200, None),
        ]
        assert all(a.from_lane for a in answers)


async def test_http_1_0_is_answered_then_closed(tmp_path: Path) -> None:
    body = notification()
    head = f"POST /alipay/notify HTTP/1.0\r\nContent-Length: {len(body)}\r\n"
    data = (head + "Content-Type: application/x-www-form-urlencoded\r\n\r\n").encode() + body
    async with serve_guarded(settings(tmp_path)) as served:
        answer = await answer_then_close(served.port, data)
        assert (answer.status, answer.body, answer.headers["connection"]) == (
            200,
            b"success",
            "close",
        )


@pytest.mark.parametrize("path", ["/alipay/notify/", "/alipay/notify/a%2Fb", "/alipay/notify/x/y"])
async def test_paths_the_lane_does_not_take_are_aiohttps(tmp_path: Path, path: str) -> None:
    async with serve_guarded(settings(tmp_path)) as served:
        [answer] = await answers_to(served.port, post(notification(), path), 1)
        assert answer.status in (403, 404) and not answer.from_lane


async def test_an_app_in_the_path_is_the_lanes(tmp_path: Path) -> None:
    async with serve_guarded(settings(tmp_path)) as served:
        mine = await answers_to(served.port, post(notification(), f"/alipay/notify/{APP_ID}"), 1)
        other = await answers_to(
            served.port, post(notification(), f"/alipay/notify/{OTHER_APP_ID}"), 1
        )
        assert (mine[0].status, mine[0].from_lane) == (200, True)
        assert (other[0].status, other[0].headers["x-subgate-error"]) == (403, "app_mismatch")


async def test_each_answer_is_in_the_access_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """In aiohttp's format, the size (``%b``) counting the whole answer, head included."""
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    request = post(notification(), **{"User-Agent": "lane-test", "Connection": "close"})
    async with serve_guarded(settings(tmp_path)) as served:
        reader, writer = await connect(served.port)
        writer.write(request)
        answer = await read_to_end(reader)
        await close(writer)
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"\r\n\r\nsuccess")
    lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    line = f'"POST /alipay/notify HTTP/1.1" 200 {len(answer)} "-" "lane-test"'
    assert any(line in logged for logged in lines), lines


async def test_an_idle_lane_connection_closes_after_the_keepalive_timeout(tmp_path: Path) -> None:
    async with serve_guarded(settings(tmp_path, keepalive_timeout_seconds=0.3)) as served:
        answer = await answer_then_close(served.port, post(notification()))
        assert answer.status == 200


async def test_lane_connections_count_against_the_cap(tmp_path: Path) -> None:
    """Connections held open mid-request on the lane take their place under
    ``max_connections``; the next is turned away, and once they close it is served."""
    async with serve_guarded(settings(tmp_path, max_connections=2)) as served:
        held = [await connect(served.port) for _ in range(2)]
        for _, writer in held:
            writer.write(b"POST /alipay/notify HTTP/1.1\r\n")
            await writer.drain()
        [turned_away] = await answers_to(served.port, post(notification()), 1)
        assert turned_away.status == 503
        for _, writer in held:
            await close(writer)
        await until(lambda: served.site.guards.open_connections == 0, "the held ones closed")
        [served_now] = await answers_to(served.port, post(notification()), 1)
        assert served_now.status == 200


async def test_notifications_waiting_on_the_store_at_shutdown_are_stored_and_answered(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    """Stopping stops the listener at once, and the lane's connections answer what they read
    before they close: every notification waiting on a held commit is acknowledged."""
    gateway = await start_gateway(settings(tmp_path))
    release = threading.Event()
    writer = gateway.store.writer  # type: ignore[attr-defined]
    held = asyncio.create_task(writer.maintain(lambda _: release.wait(DEADLINE_SECONDS)))
    url = str(gateway.client.make_url("/alipay/notify"))
    server = gateway.client.server
    assert isinstance(server, GuardedTestServer) and server.site is not None
    guards = server.site.guards
    async with aiohttp.ClientSession() as session:

        async def post_one() -> tuple[int, bytes]:
            async with session.post(url, data=notification(), headers=FORM) as answer:
                return answer.status, await answer.read()

        posts = [asyncio.create_task(post_one()) for _ in range(5)]
        await until(lambda: gateway.app[STORE_SINK].in_flight == 5, "all five wait on the writer")
        closing = asyncio.create_task(gateway.client.close())
        await until(
            lambda: (
                guards.open_connections == 5
                and server.runner is not None
                and not server.runner.sites
            ),
            "the listener has stopped",
        )
        release.set()
        answers = await asyncio.gather(*posts)
        await asyncio.gather(closing, held)
        assert guards.open_connections == 0  # closed by Subgate, the client's pool still open
    assert answers == [(200, b"success")] * 5


async def test_a_compressed_body_is_left_to_aiohttp_which_decodes_it(tmp_path: Path) -> None:
    compressed = gzip.compress(notification())
    async with serve_guarded(settings(tmp_path)) as served:
        data = post(compressed, **{"Content-Encoding": "gzip"}) + post(notification())
        answers = await answers_to(served.port, data, 2)
        assert [(a.status, a.body, a.from_lane) for a in answers] == [
            (200, b"success", False),
            (200, b"success", False),
        ]
        assert await stored(served.app) == 2


def accepting(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


async def read_to_the_end(reader: asyncio.StreamReader) -> tuple[bytes, str]:
    """Everything until the server ends the connection, and how: "eof" or "reset"."""
    received = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), DEADLINE_SECONDS):
            received += chunk
    except ConnectionResetError:
        return received, "reset"
    return received, "eof"


async def test_trailers_count_against_the_body_and_are_not_kept(tmp_path: Path) -> None:
    """Trailer fields come after a chunked body: bounded with it, so a client streaming them
    is refused 413 instead of growing the connection's memory."""
    head = request_head("POST", "/alipay/notify", {**FORM, "Transfer-Encoding": "chunked"})
    trailer = b"X-Trailer: " + b"v" * 50 + b"\r\n"
    async with serve_guarded(settings(tmp_path, max_body_bytes=4096)) as served:
        reader, writer = await connect(served.port)
        try:
            writer.write(head + b"1\r\na\r\n0\r\n")
            writer.write(trailer * 4000)  # about 250 KB of trailers
            answer = await read_answer(reader)
        finally:
            await close(writer)
        assert (answer.status, answer.headers["x-subgate-error"]) == (413, "too_large")


async def test_a_large_body_handed_to_aiohttp_is_read_whole(tmp_path: Path) -> None:
    """A request the lane hands to aiohttp may have a body as large as aiohttp allows, far past
    the lane's bound on a head."""
    large = gzip.compress(notification() + b"&pad=" + b"x" * 150_000, compresslevel=0)
    async with serve_guarded(settings(tmp_path, max_body_bytes=1_000_000)) as served:
        reader, writer = await connect(served.port)
        try:
            writer.write(post(notification()))
            first = await read_answer(reader)
            writer.write(post(large, **{"Content-Encoding": "gzip"}))
            second = await read_answer(reader)
        finally:
            await close(writer)
        assert (first.status, first.from_lane) == (200, True)
        assert not second.from_lane and second.headers["x-subgate-error"] == "bad_signature"


async def test_a_refusal_lingers_so_a_client_still_sending_reads_it(tmp_path: Path) -> None:
    """Refused unread (413), the connection is half-closed and the rest of the body is read and
    dropped: the client reads its answer and an orderly end, not a reset."""
    head = request_head("POST", "/alipay/notify", {**FORM, "Content-Length": "50000000"})
    async with serve_guarded(settings(tmp_path, max_body_bytes=4096)) as served:
        reader, writer = await connect(served.port)
        try:
            writer.write(head)
            answer = await read_answer(reader)
            for _ in range(8):
                writer.write(b"x" * 65536)
                await writer.drain()
            rest, ending = await read_to_the_end(reader)
        finally:
            await close(writer)
        assert answer.status == 413
        assert (rest, ending) == (b"", "eof")


async def test_an_http_1_0_client_asking_to_keep_the_connection_is_told_so(tmp_path: Path) -> None:
    body = notification()
    head = (
        f"POST /alipay/notify HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: {len(body)}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n\r\n"
    )
    async with serve_guarded(settings(tmp_path)) as served:
        [first, second] = await answers_to(served.port, 2 * (head.encode() + body), 2)
        assert first.headers["connection"] == "keep-alive" and first.status == 200
        assert second.status == 200


async def test_a_malformed_request_after_aiohttps_is_refused_by_aiohttp_in_order(
    tmp_path: Path,
) -> None:
    """aiohttp answers the request it was handed, then refuses the one the lane could not parse
    (each request once: what the lane had parsed is not sent twice)."""
    broken = b"GET / HTTP/1.1\r\nBad\x01Header: x\r\n\r\n"
    async with serve_guarded(settings(tmp_path)) as served:
        reader, writer = await connect(served.port)
        try:
            writer.write(post(notification()))
            first = await read_answer(reader)
            writer.write(request_head("GET", "/healthz", {}) + broken)
            health, refused = await read_answer(reader), await read_answer(reader)
            rest, ending = await read_to_the_end(reader)
        finally:
            await close(writer)
        assert (first.status, health.status, refused.status) == (200, 200, 400)
        assert not health.from_lane and not refused.from_lane
        assert (rest, ending) == (b"", "eof")


async def test_a_route_that_raises_closes_its_connection_and_shutdown_does_not_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(self: object, request: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(NotifyLane, "answer", broken)
    async with serve_guarded(settings(tmp_path)) as served:
        reader, writer = await connect(served.port)
        try:
            writer.write(post(notification()))
            rest, _ = await read_to_the_end(reader)
        finally:
            await close(writer)
        assert rest == b""
        await until(lambda: served.site.guards.open_connections == 0, "the connection closed")
    assert "the lane's route failed to answer" in caplog.text


async def test_a_request_half_read_at_shutdown_is_read_answered_and_its_connection_closed(
    tmp_path: Path,
) -> None:
    """Stopping reads no new request, but the one whose body is on its way is read and answered
    (its read deadline bounds the wait), with ``Connection: close``."""
    body = notification()
    whole = post(body)
    async with serve_guarded(settings(tmp_path)) as served:
        guards = served.site.guards
        reader, writer = await connect(served.port)
        try:
            writer.write(whole[: len(whole) - len(body) // 2])
            await until(
                lambda: any(c.reading_a_request for c in guards.lane_connections),
                "the lane is reading the body",
            )
            stopping = asyncio.create_task(served.site.stop())
            await until(lambda: not accepting(served.port), "the listener has stopped")
            writer.write(whole[len(whole) - len(body) // 2 :])
            answer = await read_answer(reader)
            rest, ending = await read_to_the_end(reader)
            await stopping
        finally:
            await close(writer)
        assert (answer.status, answer.body, answer.headers["connection"]) == (
            200,
            b"success",
            "close",
        )
        assert (rest, ending) == (b"", "eof")
        assert await stored(served.app) == 1
