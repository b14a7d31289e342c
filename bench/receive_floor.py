"""The least CPU Python spends receiving a file over HTTP ranges and writing it to disk, for bench/cpu_floor.py.

    python bench/receive_floor.py URL SIZE OUT [--connections 16] [--header 'Name: value']

``--connections`` plain sockets to the (plain http) URL each ask for their share of the bytes with one Range
GET; one thread waits on them all (epoll) and writes what each ``recv`` returns at its offset with ``pwrite``: no
HTTP library, no event loop beyond the selector, no hashing, no syncing to disk, no saved state. Fails unless
every byte came.
"""

from __future__ import annotations

import argparse
import os
import selectors
import socket
import urllib.parse
from dataclasses import dataclass

READ_SIZE = 512 * 1024


@dataclass
class Range:
    """One connection's share of the file: bytes [position, end) still to come."""

    sock: socket.socket
    position: int
    end: int
    head: bytes | None = b""
    """The response's headers while they are incomplete; None once the body has begun."""


def open_range(url: str, headers: list[str], start: int, end: int) -> Range:
    """Connect and ask for bytes [start, end) of ``url``."""
    parts = urllib.parse.urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    request = "".join(f"{h}\r\n" for h in [f"GET {target} HTTP/1.1", f"Host: {parts.netloc}",
                                            f"Range: bytes={start}-{end - 1}", "Connection: close", *headers])
    sock = socket.create_connection((parts.hostname, parts.port or 80))
    sock.sendall(f"{request}\r\n".encode())
    sock.setblocking(False)
    return Range(sock, start, end)


def receive(fd: int, wanted: Range, piece: bytes) -> None:
    """Write ``piece`` (after the headers, once they are complete) at the range's position."""
    if wanted.head is not None:
        wanted.head += piece
        if b"\r\n\r\n" not in wanted.head:
            return
        status, _, piece = wanted.head.partition(b"\r\n\r\n")
        if b" 206 " not in status.split(b"\r\n", 1)[0]:
            raise SystemExit(f"expected 206 at byte {wanted.position}, got {status.splitlines()[0]!r}")
        wanted.head = None
    if piece:
        wanted.position += os.pwrite(fd, piece[: wanted.end - wanted.position], wanted.position)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("url")
    parser.add_argument("size", type=int)
    parser.add_argument("out")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--header", action="append", default=[])
    args = parser.parse_args()
    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.ftruncate(fd, args.size)
    share = -(-args.size // args.connections)
    selector = selectors.DefaultSelector()
    for start in range(0, args.size, share):
        wanted = open_range(args.url, args.header, start, min(start + share, args.size))
        selector.register(wanted.sock, selectors.EVENT_READ, wanted)
    while selector.get_map():
        for key, _ in selector.select():
            wanted = key.data
            piece = wanted.sock.recv(READ_SIZE)
            if not piece:
                raise SystemExit(f"the connection closed at byte {wanted.position} of its range")
            receive(fd, wanted, piece)
            if wanted.head is None and wanted.position >= wanted.end:
                selector.unregister(wanted.sock)
                wanted.sock.close()
    os.close(fd)
    print(args.out)


if __name__ == "__main__":
    main()
