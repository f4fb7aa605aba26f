"""One attempt against a real receiver on 127.0.0.1: what counts as delivered, and how a
receiver that answers badly, slowly, at length or not at all is cut off."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from server.delivery.pool import DestinationPool
from server.delivery.posting import Answer, Request, post_event
from tests.server.receiver import Received, Receiver, answering, receiving
from tests.server.subgate_process import free_port

BODY = b'{"type":"notification.received","timestamp":"2026-11-23T08:00:00.000Z","data":{}}'
HEADERS = {"content-type": "application/json", "webhook-id": "evt_1"}
CHUNK = b"x" * 65536


Post = Callable[[Request], Awaitable[Answer]]


@pytest.fixture
async def post() -> AsyncIterator[Post]:
    """Posts ``BODY`` as a courier would: one pool per destination URL, reused across posts."""
    pools: dict[str, DestinationPool] = {}

    async def posting(request: Request) -> Answer:
        pool = pools.setdefault(
            request.url, DestinationPool(request.url, request.max_response_bytes)
        )
        return await post_event(pool, request, BODY, HEADERS)

    yield posting
    for pool in pools.values():
        pool.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with receiving() as running:
        yield running


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
async def test_any_2xx_delivers(post: Post, receiver: Receiver, status: int) -> None:
    receiver.answer = answering(status, b"thanks")

    answer = await post(Request(receiver.url, 5.0, 1024))

    assert (answer.delivered, answer.status_code, answer.error) == (True, status, None)
    (received,) = receiver.received
    assert received.body == BODY and received.headers["content-type"] == "application/json"


@pytest.mark.parametrize("status", [301, 400, 404, 409, 429, 500, 503])
async def test_anything_else_is_not_delivered_and_says_its_status(
    post: Post, receiver: Receiver, status: int
) -> None:
    receiver.answer = answering(status, b"the receiver's own words")

    answer = await post(Request(receiver.url, 5.0, 1024))

    assert (answer.delivered, answer.status_code, answer.error) == (False, status, f"HTTP {status}")


async def test_a_redirect_is_not_followed(post: Post, receiver: Receiver) -> None:
    async def elsewhere(request: web.Request, received: Received) -> web.StreamResponse:
        raise web.HTTPTemporaryRedirect(receiver.url + "/again")

    receiver.answer = elsewhere

    answer = await post(Request(receiver.url, 5.0, 1024))

    assert (answer.status_code, answer.error, len(receiver.received)) == (307, "HTTP 307", 1)


async def test_a_refused_connection_has_no_status(post: Post) -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"

    answer = await post(Request(url, 5.0, 1024))

    assert (answer.delivered, answer.status_code) == (False, None)
    assert answer.error == "cannot connect: Connection refused"


async def test_a_hanging_receiver_is_cut_off_at_the_timeout(post: Post, receiver: Receiver) -> None:
    async def hang(request: web.Request, received: Received) -> web.StreamResponse:
        await asyncio.sleep(30)
        return web.Response()

    receiver.answer = hang
    started = time.monotonic()

    answer = await post(Request(receiver.url, 0.5, 1024))

    assert 0.45 < time.monotonic() - started < 2.0
    assert (answer.status_code, answer.error) == (None, "timed out after 0.5 s")
    assert 450 <= answer.latency_ms < 2000


async def flood(request: web.Request, status: int, sent: list[int]) -> web.StreamResponse:
    """Stream up to 1 GiB without a Content-Length, counting what left."""
    response = web.StreamResponse(status=status)
    await response.prepare(request)
    for _ in range(16384):
        await response.write(CHUNK)
        sent.append(len(CHUNK))
    await response.write_eof()
    return response


@pytest.mark.parametrize(("status", "error"), [(500, "HTTP 500; answer cut off"), (200, None)])
async def test_a_huge_answer_is_read_up_to_the_limit_then_dropped(
    post: Post, receiver: Receiver, status: int, error: str | None
) -> None:
    sent: list[int] = []

    async def huge(request: web.Request, received: Received) -> web.StreamResponse:
        return await flood(request, status, sent)

    receiver.answer = huge

    answer = await post(Request(receiver.url, 10.0, 100_000))

    assert answer.status_code == status and answer.latency_ms < 5000
    assert (answer.error or "").startswith(error or "") and (error is None) == (
        answer.error is None
    )
    await asyncio.sleep(0.2)  # what the receiver still manages to write into a closed socket
    assert sum(sent) < 64 * 1024 * 1024


async def test_a_body_trickling_past_the_timeout_is_cut_off(post: Post, receiver: Receiver) -> None:
    async def trickle(request: web.Request, received: Received) -> web.StreamResponse:
        response = web.StreamResponse(status=503)
        await response.prepare(request)
        for _ in range(100):
            await response.write(b".")
            await asyncio.sleep(0.1)
        return response

    receiver.answer = trickle

    answer = await post(Request(receiver.url, 0.5, 100_000))

    assert answer.status_code == 503 and answer.latency_ms < 2000
    assert answer.error == "HTTP 503; timed out reading the answer"


async def test_an_answer_read_whole_keeps_the_connection_a_cut_one_drops_it(
    post: Post, receiver: Receiver
) -> None:
    receiver.answer = answering(200, b"x" * 1000)
    request = Request(receiver.url, 5.0, 1000)

    answers = [await post(request) for _ in range(3)]
    receiver.answer = answering(200, b"x" * 4_000_000)
    answers += [await post(request) for _ in range(2)]

    assert all(answer.delivered for answer in answers)
    peers = [received.peer for received in receiver.received]
    assert peers[0] == peers[1] == peers[2] == peers[3] != peers[4]
