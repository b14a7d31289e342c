"""TLS contexts made while a command is imported load the CA certificates on first use, and verify as strictly
(issue #16: aiohttp's two contexts parsed the CA bundle at every start, even for plain HTTP)."""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import os
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mreg.cli.deferred_cas import cas_on_first_use

ROOT = Path(__file__).resolve().parent.parent
CLIENT = """
import asyncio, sys
from mreg.cli.lazy import LazyCommand
LazyCommand("mreg.cli.remote_commands:pull_command", "").load()
import aiohttp
from aiohttp import connector

def cas():
    return connector._SSL_CONTEXT_VERIFIED.cert_store_stats()["x509_ca"]

async def get(**kwargs):
    async with aiohttp.ClientSession() as session:
        try:
            async with session.get(sys.argv[1], **kwargs) as resp:
                return str(resp.status)
        except aiohttp.ClientConnectorCertificateError:
            return "untrusted"

before = cas()
print(before, asyncio.run(get()), asyncio.run(get(ssl=False)), cas() > 0)
"""


def _name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def _ca(directory: Path, name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed CA, also written to ``directory/name.pem``."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name)).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (directory / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


@pytest.fixture
def https_url(tmp_path: Path) -> Iterator[str]:
    """An HTTPS server on 127.0.0.1 whose certificate ``tmp_path/ca.pem`` signed."""
    ca_key, ca = _ca(tmp_path, "ca")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    chain = tmp_path / "server.pem"
    chain.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()) + cert.public_bytes(serialization.Encoding.PEM))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _client(url: str, ca_file: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "SSL_CERT_DIR"}
    done = subprocess.run([sys.executable, "-c", CLIENT, url], env={**env, "SSL_CERT_FILE": str(ca_file)}, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_aiohttp_loads_the_cas_at_the_first_handshake_and_verifies_with_them(https_url: str, tmp_path: Path) -> None:
    assert _client(https_url, tmp_path / "ca.pem") == "0 200 200 True"


def test_a_server_the_cas_do_not_vouch_for_is_still_refused(https_url: str, tmp_path: Path) -> None:
    _ca(tmp_path, "other")
    assert _client(https_url, tmp_path / "other.pem") == "0 untrusted 200 True"


def test_contexts_made_inside_load_on_first_wrap_and_the_method_comes_back() -> None:
    with cas_on_first_use():
        verified = ssl.create_default_context()
        unverified = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        unverified.check_hostname = False
        unverified.verify_mode = ssl.CERT_NONE
        unverified.set_default_verify_paths()
    assert "set_default_verify_paths" not in vars(ssl.SSLContext)
    assert verified.cert_store_stats()["x509_ca"] == 0
    verified.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname="example.org")
    assert verified.cert_store_stats()["x509_ca"] > 0 and not vars(verified)
    assert unverified.cert_store_stats()["x509_ca"] == 0
    unverified.wrap_socket(socket.socket(), do_handshake_on_connect=False).close()
    assert unverified.cert_store_stats()["x509_ca"] > 0
    assert ssl.create_default_context().cert_store_stats()["x509_ca"] > 0, "contexts made outside load at once"
