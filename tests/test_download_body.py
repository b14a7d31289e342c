"""``registry.download.body``: a plain body read straight from the connection, against a real server on
127.0.0.1 (plain TCP and TLS) that sends its bytes exactly as each test says."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mreg.registry.download.body import MAX_QUEUED, body_chunks
from tests.relay import relay

SIZE = 3 * MAX_QUEUED + 12345
BODY = bytes(range(256)) * (SIZE // 256) + bytes(SIZE % 256)


class Server:
    """Answers every GET on a kept-alive connection as ``path`` says; the body waits for ``go`` (set by the
    client once it holds the response headers), so the body's bytes come after the client took over."""

    def __init__(self) -> None:
        self.connections = 0
        self.go = asyncio.Event()
        self.done = asyncio.Event()
        self.url = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while request := await reader.readuntil(b"\r\n\r\n"):
                path = urlsplit(request.split(b" ")[1].decode()).path  # a proxy sends the absolute URL
                await self.answer(path, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def answer(self, path: str, writer: asyncio.StreamWriter) -> None:
        chunked = path == "/chunked"
        head = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {SIZE}"
        writer.write(f"HTTP/1.1 200 OK\r\n{head}\r\n\r\n".encode())
        await writer.drain()
        await self.go.wait()
        self.go.clear()
        if chunked:
            writer.write(b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (BODY[:SIZE // 2], BODY[SIZE // 2:], b"")))
        elif path == "/extra":
            writer.write(BODY + b"x" * 1000)
        elif path in ("/cut", "/stall"):
            writer.write(BODY[:SIZE // 2])
            await writer.drain()
            if path == "/stall":
                await self.done.wait()
            raise ConnectionError("cut")
        else:
            writer.write(BODY)
        await writer.drain()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    served = Server()
    tcp = await asyncio.start_server(served.handle, "127.0.0.1", 0)
    served.url = f"http://127.0.0.1:{tcp.sockets[0].getsockname()[1]}"
    yield served
    served.done.set()
    tcp.close()


async def fetch(session: aiohttp.ClientSession, server: Server, path: str, pause: float = 0.0) -> bytes:
    """GET ``path``, let the server send the body, read it all (waiting ``pause`` after the first piece)."""
    async with session.get(server.url + path) as resp:
        server.go.set()
        pieces = []
        async for piece in body_chunks(resp):
            if pause and len(pieces) == 1:
                await asyncio.sleep(pause)  # a slow reader: the socket is not read meanwhile
            pieces.append(piece)
        return b"".join(pieces)


async def test_a_plain_body_comes_whole_and_its_connection_serves_the_next_request(server: Server) -> None:
    async with aiohttp.ClientSession() as session:
        assert await fetch(session, server, "/plain") == BODY
        assert await fetch(session, server, "/plain") == BODY
    assert server.connections == 1


async def test_bytes_past_the_content_length_are_dropped_and_the_connection_closed(server: Server) -> None:
    async with aiohttp.ClientSession() as session:
        assert await fetch(session, server, "/extra") == BODY
        assert await fetch(session, server, "/plain") == BODY
    assert server.connections == 2


async def test_a_body_cut_short_fails(server: Server) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientPayloadError, match="still to come"):
            await fetch(session, server, "/cut")
        assert await fetch(session, server, "/plain") == BODY
    assert server.connections == 2


async def test_a_stalled_body_times_out(server: Server) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(sock_read=0.3)) as session:
        with pytest.raises(TimeoutError):
            await fetch(session, server, "/stall")


async def test_a_slow_reader_is_not_timed_out(server: Server) -> None:
    """The socket is not read while the reader holds MAX_QUEUED bytes: that wait is not the server's."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(sock_read=0.5)) as session:
        assert await fetch(session, server, "/plain", pause=1.0) == BODY
        assert await fetch(session, server, "/plain") == BODY
    assert server.connections == 1


async def test_a_pooled_connection_outlives_the_read_timeout(server: Server) -> None:
    """A body read to its end leaves no read timeout running on the connection it gives back."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(sock_read=0.5)) as session:
        assert await fetch(session, server, "/plain") == BODY
        await asyncio.sleep(1.0)  # idle in the pool for longer than the read timeout
        assert await fetch(session, server, "/plain") == BODY
    assert server.connections == 1


async def test_a_chunked_body_is_read_through_aiohttp(server: Server) -> None:
    async with aiohttp.ClientSession() as session:
        assert await fetch(session, server, "/chunked") == BODY
        assert await fetch(session, server, "/plain") == BODY
    assert server.connections == 1


async def test_through_an_http_proxy(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """As mreg's session finds a proxy (``trust_env``): the relay gets the absolute URL and passes it on (the
    origin's name resolves nowhere, so only the proxy can have answered)."""
    port = int(server.url.rsplit(":", 1)[1])
    with relay(("127.0.0.1", port)) as proxy:
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        async with aiohttp.ClientSession(trust_env=True) as session:
            server.url = "http://mreg-origin.invalid:80"  # only the proxy can reach it
            assert await fetch(session, server, "/plain") == BODY
            assert await fetch(session, server, "/plain") == BODY
    assert server.connections == 1


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


async def test_over_tls(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    served = Server()
    tls = await asyncio.start_server(served.handle, "127.0.0.1", 0, ssl=server_context)
    served.url = f"https://127.0.0.1:{tls.sockets[0].getsockname()[1]}"
    try:
        connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=cert))
        async with aiohttp.ClientSession(connector=connector) as session:
            assert await fetch(session, served, "/plain") == BODY
            with pytest.raises(aiohttp.ClientPayloadError):
                await fetch(session, served, "/cut")
            assert await fetch(session, served, "/plain") == BODY
        assert served.connections == 2
    finally:
        served.done.set()
        tls.close()
