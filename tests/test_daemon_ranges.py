"""Range readers of a file the mirror does not store yet join the one transfer filling it (#14 item 14):
parallel readers that split the file (as hf_transfer and aria2c -x do, on the Hub and ModelScope routes),
a suffix range and an open range. Upstream sends the file about once (the test hub counts its body
bytes), every reader gets exact bytes, its first ones quickly, and the file is then stored and served
warm. No range a failing transfer serves is ever whole (#14.1), and a header read is still relayed."""

from __future__ import annotations

import hashlib
import http.client
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.backends import Backend
from tests.daemons import Daemon, connection, running_daemon, wait_for
from tests.testhub import TestHub, generated_file, small_repo

pytestmark = pytest.mark.timeout(120)

SIZE = 16_000_000
LINK = 4_000_000
"""Bytes per second the test hub's link sends (every response together): the fill takes about 4 s."""
FIRST_BYTE = 2.5
"""Seconds a reader may wait for its first byte: well before the fill's end (it takes 4 s; huggingface_hub gives
up after 10), with room for a loaded machine (2.04 s was seen at load 5 with a 1.5 s limit)."""


@pytest.fixture
def daemon(test_hub: TestHub, tmp_path: Path, backend: Backend) -> Iterator[Daemon]:
    yield from running_daemon(test_hub, tmp_path, backend=backend)


@dataclass
class Read:
    """What one reader got."""

    status: int = 0
    content_range: str | None = None
    body: bytes = b""
    whole: bool = False
    """The body came whole (as long as announced)."""
    first_byte: float | None = None
    """Seconds from the request to the first body byte."""


def read_range(url: str, header: str, into: Read) -> None:
    """GET ``url`` with ``Range: header`` into ``into``, noting when the first body byte came."""
    path = url.split("/", 3)[3]
    conn = connection(url)
    try:
        started = time.monotonic()
        conn.request("GET", f"/{path}", headers={"Range": header})
        response = conn.getresponse()
        into.status, into.content_range = response.status, response.getheader("Content-Range")
        first = response.read(1)
        into.first_byte = time.monotonic() - started
        try:
            into.body, into.whole = first + response.read(), True
        except http.client.IncompleteRead as cut:
            into.body = first + cut.partial
    finally:
        conn.close()


def read_in_parallel(url: str, headers: list[str]) -> list[Read]:
    reads = [Read() for _ in headers]
    threads = [threading.Thread(target=read_range, args=(url, h, r)) for h, r in zip(headers, reads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return reads


def served_once(test_hub: TestHub, data: bytes) -> float:
    """How many times over upstream has sent ``data``'s bytes."""
    return test_hub.stats.bytes_by_sha256[hashlib.sha256(data).hexdigest()] / len(data)


def add_file(test_hub: TestHub, tmp_path: Path, repo: str, seed: int) -> bytes:
    path = generated_file(tmp_path / "data" / f"{seed}.bin", SIZE, seed=seed)
    test_hub.add_repo(small_repo(repo, {"big.bin": path}))
    return path.read_bytes()


def assert_stored_and_warm(daemon: Daemon, test_hub: TestHub, url_path: str, data: bytes) -> None:
    test_hub.stats.reset()
    status, _, body = daemon.get(url_path, {"Range": "bytes=1000-1999"})
    assert status == 206 and body == data[1000:2000]
    status, _, body = daemon.get(url_path)
    assert status == 200 and body == data
    assert test_hub.stats.bytes_by_sha256[hashlib.sha256(data).hexdigest()] == 0  # from the store


ROUTES = {"hub": "/testorg/split/resolve/main/big.bin", "modelscope": "/api/v1/models/testorg/split/repo?FilePath=big.bin"}


@pytest.mark.parametrize(("readers", "route"), [(4, "hub"), (8, "hub"), (4, "modelscope")])
def test_parallel_range_readers_share_one_transfer(daemon: Daemon, test_hub: TestHub, tmp_path: Path,
                                                  readers: int, route: str) -> None:
    data = add_file(test_hub, tmp_path, "testorg/split", seed=21)
    test_hub.faults.bandwidth = LINK
    url_path = ROUTES[route]
    piece = -(-SIZE // readers)
    bounds = [(start, min(start + piece, SIZE) - 1) for start in range(0, SIZE, piece)]
    reads = read_in_parallel(daemon.url + url_path, [f"bytes={a}-{b}" for a, b in bounds])
    for (start, last), read in zip(bounds, reads):
        assert read.status == 206 and read.content_range == f"bytes {start}-{last}/{SIZE}"
        assert read.whole and read.body == data[start:last + 1]
        assert read.first_byte is not None and read.first_byte < FIRST_BYTE
    assert served_once(test_hub, data) <= 1.1
    assert daemon.metrics()["mreg_restarted_ranges_total"] == 0
    assert_stored_and_warm(daemon, test_hub, url_path, data)


ENDS = {"bytes=-3000000": (SIZE - 3_000_000, SIZE), "bytes=5000000-": (5_000_000, SIZE)}


@pytest.mark.parametrize("headers", [["bytes=-3000000"], ["bytes=5000000-"], ["bytes=-3000000", "bytes=5000000-"]],
                         ids=["suffix", "open", "both"])
def test_a_suffix_range_and_an_open_range_fill_the_store(daemon: Daemon, test_hub: TestHub, tmp_path: Path,
                                                         headers: list[str]) -> None:
    data = add_file(test_hub, tmp_path, "testorg/ends", seed=22)
    test_hub.faults.bandwidth = LINK
    url_path = "/testorg/ends/resolve/main/big.bin"
    for header, read in zip(headers, read_in_parallel(daemon.url + url_path, headers)):
        start, end = ENDS[header]
        assert read.status == 206 and read.content_range == f"bytes {start}-{end - 1}/{SIZE}"
        assert read.whole and read.body == data[start:end]
        assert read.first_byte is not None and read.first_byte < FIRST_BYTE
    assert served_once(test_hub, data) <= 1.1  # the bytes before the range too: the file is stored whole
    assert_stored_and_warm(daemon, test_hub, url_path, data)


def test_no_reader_of_a_transfer_that_fails_verification_gets_a_whole_range(daemon: Daemon, test_hub: TestHub,
                                                                             tmp_path: Path) -> None:
    """#14.1 with ranges: every range's last byte waits for the verification, so each reader of a transfer
    that fails it is cut off; a range continuing one of them gets the whole file (200), never a tail."""
    data = add_file(test_hub, tmp_path, "testorg/corrupt", seed=25)
    test_hub.faults.bandwidth = LINK
    test_hub.faults.corrupt("big.bin", count=1, route="cdn")  # one response of the transfer carries a flipped byte
    url_path = "/testorg/corrupt/resolve/main/big.bin"
    quarter = SIZE // 4
    reads = read_in_parallel(daemon.url + url_path, [f"bytes={a}-{a + quarter - 1}" for a in range(0, SIZE, quarter)])
    assert all(r.status == 206 and not r.whole and len(r.body) < quarter for r in reads)
    test_hub.faults.bandwidth = None
    cut_at = quarter + len(reads[1].body)
    status, headers, body = daemon.get(url_path, {"Range": f"bytes={cut_at}-{2 * quarter - 1}"})
    assert status == 200 and "Content-Range" not in headers and body == data  # the whole file, fetched again
    assert daemon.metrics()["mreg_restarted_ranges_total"] == 1
    status, _, body = daemon.get(url_path, {"Range": "bytes=0-99"})  # a range from 0 is served as asked
    assert status == 206 and body == data[:100]


def test_a_header_read_is_relayed_without_waiting_for_a_transfer(daemon: Daemon, test_hub: TestHub,
                                                                  tmp_path: Path) -> None:
    """A header read (a small bounded range: a safetensors header, a 1-byte probe) does not fetch the whole
    file, and does not wait for a transfer of it to be verified either: it is relayed."""
    data = add_file(test_hub, tmp_path, "testorg/header", seed=23)
    url_path = "/testorg/header/resolve/main/big.bin"
    status, _, body = daemon.get(url_path, {"Range": "bytes=0-99999"})
    assert status == 206 and body == data[:100_000]
    assert [r.range for r in test_hub.stats.find(host="cdn")] == ["bytes=0-99999"]  # not the whole file
    test_hub.faults.bandwidth = LINK
    whole = Read()
    filling = threading.Thread(target=read_range, args=(daemon.url + url_path, "bytes=0-", whole))
    filling.start()
    wait_for(lambda: whole.first_byte is not None, 30, "the transfer's first byte")
    for header, expected in (("bytes=0-0", data[:1]), ("bytes=1000000-1099999", data[1_000_000:1_100_000])):
        started = time.monotonic()
        status, _, body = daemon.get(url_path, {"Range": header})
        assert status == 206 and body == expected and time.monotonic() - started < FIRST_BYTE, header
    assert filling.is_alive()  # the transfer runs on (it takes about 4 s)
    filling.join(60)
    assert whole.whole and whole.body == data
    assert served_once(test_hub, data) <= 1.1


def test_a_download_split_into_small_pieces_joins_the_transfer_past_the_head(daemon: Daemon, test_hub: TestHub,
                                                                               tmp_path: Path) -> None:
    """Pieces smaller than a header read (1 MB of 64 MB): only those in the file's first 8 MiB are relayed,
    the others join the one transfer, so the file is stored and a later download costs no upstream byte
    (relayed pieces alone would be sent again: 2x)."""
    size, piece = 64_000_000, 1_000_000
    path = generated_file(tmp_path / "data" / "small-pieces.bin", size, seed=26)
    test_hub.add_repo(small_repo("testorg/pieces", {"big.bin": path}))
    data = path.read_bytes()
    url_path = "/testorg/pieces/resolve/main/big.bin"
    headers = [f"bytes={a}-{a + piece - 1}" for a in range(0, size, piece)]
    for batch in range(0, len(headers), 8):  # 8 connections at a time, as a splitter keeps them
        for header, read in zip(headers[batch:batch + 8], read_in_parallel(daemon.url + url_path,
                                                                            headers[batch:batch + 8])):
            start = int(header.removeprefix("bytes=").split("-")[0])
            assert read.status == 206 and read.whole and read.body == data[start:start + piece], header
    status, _, body = daemon.get(url_path)
    assert status == 200 and body == data
    # the file once, its relayed head (8 MB), and bytes in flight on parts cut short for waiting readers
    # (1.13-1.36x measured; relayed pieces alone, then the download: 2x)
    assert served_once(test_hub, data) <= 1.5


@pytest.mark.skipif(shutil.which("aria2c") is None, reason="aria2c is not installed (apt-get install aria2)")
def test_aria2c_split_four_ways_fetches_the_file_once(daemon: Daemon, test_hub: TestHub, tmp_path: Path) -> None:
    data = add_file(test_hub, tmp_path, "testorg/aria", seed=24)
    test_hub.faults.bandwidth = LINK
    out = tmp_path / "aria"
    done = subprocess.run(["aria2c", "-x4", "-s4", "-k1M", "--file-allocation=none", "--summary-interval=0",
                           "--console-log-level=warn", "--max-tries=1", "-d", str(out), "-o", "big.bin",
                           f"{daemon.url}/testorg/aria/resolve/main/big.bin"], capture_output=True, timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (out / "big.bin").read_bytes() == data
    assert served_once(test_hub, data) <= 1.1
    assert_stored_and_warm(daemon, test_hub, "/testorg/aria/resolve/main/big.bin", data)
