"""A destination's connections against servers that answer with scripted bytes on 127.0.0.1:
what HTTP/1.1 allows (interim answers, answers ended by a close, keep-alive closed while idle,
TLS) is read right, and what it does not is refused without a hang."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from server.delivery.pool import DestinationPool
from server.delivery.posting import Answer, Request, post_event

BODY = b'{"type":"notification.received","timestamp":"2026-11-23T08:00:00.000Z","data":{}}'
HEADERS = {"content-type": "application/json", "webhook-id": "evt_1"}
OK = b"HTTP/1.1 204 No Content\r\n\r\n"

# Reads one request's head and body from a connection; writes what the test scripts.
Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head, await reader.readexactly(length)


@asynccontextmanager
async def scripted(
    script: Script, tls: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A server running ``script`` on each connection; its URL and every request head it read."""
    heads: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head, _ = await read_request(reader)
                heads.append(head)
                await script(reader, writer)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}/hook", heads


def answering(*chunks: bytes, close: bool = False) -> Script:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
        if close:
            writer.close()

    return script


async def post_once(url: str, pool: DestinationPool | None = None) -> Answer:
    pool = pool or DestinationPool(url, 1024)
    return await post_event(pool, Request(url, 5.0, 1024), BODY, HEADERS)


async def test_an_interim_answer_is_passed_over_for_the_real_one() -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    async with scripted(answering(interim, OK)) as (url, _):
        answer = await post_once(url)
    assert (answer.status_code, answer.delivered, answer.error) == (204, True, None)


async def test_an_answer_without_a_length_ends_with_its_connection() -> None:
    async with scripted(answering(b"HTTP/1.1 500 Oops\r\n\r\nsomething broke", close=True)) as (
        url,
        heads,
    ):
        pool = DestinationPool(url, 1024)
        first, second = await post_once(url, pool), await post_once(url, pool)
    assert (first.status_code, first.error) == (500, "HTTP 500")
    assert (second.status_code, len(heads)) == (500, 2)  # the second on a new connection


async def test_a_body_shorter_than_announced_is_malformed_and_a_2xx_still_delivers() -> None:
    short = b"HTTP/1.1 %d X\r\nContent-Length: 100\r\n\r\nonly this"
    async with scripted(answering(short % 502, close=True)) as (url, _):
        failed = await post_once(url)
    async with scripted(answering(short % 200, close=True)) as (url, _):
        taken = await post_once(url)
    assert (failed.status_code, failed.error) == (502, "HTTP 502; the answer's body was malformed")
    assert (taken.delivered, taken.error) == (True, None)


@pytest.mark.parametrize(
    ("garbage", "error"),
    [
        (b"SMTP ready\r\n\r\n", "malformed answer"),
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n", None),
        (b"HTTP/1.1 503 X\r\nContent-Length: nope\r\n\r\n", None),
    ],
)
async def test_an_answer_that_is_not_http_is_refused_at_once(
    garbage: bytes, error: str | None
) -> None:
    async with scripted(answering(garbage)) as (url, _):
        answer = await asyncio.wait_for(post_once(url), 3)
    assert not answer.delivered and answer.latency_ms < 3000
    assert answer.error is not None and "malformed" in answer.error
    assert error is None or answer.error == error


async def test_a_connection_closed_without_an_answer_says_so() -> None:
    async with scripted(answering(close=True)) as (url, _):
        answer = await post_once(url)
    assert (answer.status_code, answer.error) == (
        None,
        "the server closed the connection without an answer",
    )


async def test_a_keep_alive_connection_closed_while_idle_is_replaced_once() -> None:
    served = 0

    async def once_per_connection(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        nonlocal served
        served += 1
        writer.write(OK)  # keep-alive by default, yet closed right after, as an idle timeout would
        await writer.drain()
        writer.close()

    async with scripted(once_per_connection) as (url, heads):
        pool = DestinationPool(url, 1024)
        answers = [await post_once(url, pool) for _ in range(3)]
    assert [a.delivered for a in answers] == [True, True, True]
    assert served == len(heads) == 3


async def test_credentials_in_the_url_become_basic_authorization() -> None:
    async with scripted(answering(OK)) as (url, heads):
        credentialed = url.replace("http://", "http://hook%40user:s3cr%3At@")
        answer = await post_once(credentialed)
    expected = base64.b64encode(b"hook@user:s3cr:t").decode()
    assert answer.delivered
    assert f"Authorization: Basic {expected}".encode() in heads[0].split(b"\r\n")
    assert b"Host: 127.0.0.1:" in heads[0] and b"@" not in heads[0].split(b"\r\n")[1]


def tls_pair(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for 127.0.0.1, and a client context trusting it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "receiver")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    client = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
    return server, client


async def test_https_is_verified_against_the_trusted_certificates(tmp_path: Path) -> None:
    server_tls, client_tls = tls_pair(tmp_path)
    async with scripted(answering(OK), tls=server_tls) as (url, heads):
        trusted = await post_once(url, DestinationPool(url, 1024, client_tls))
        untrusted = await post_once(url)  # the system's authorities do not know this one
    assert (trusted.delivered, len(heads)) == (True, 1)
    assert (untrusted.delivered, untrusted.error) == (
        False,
        "cannot connect: the certificate was not trusted",
    )
