"""Which bytes of a shared fill's partial file a replica frees (#13): ``Freeable`` over offsets alone, and
``LocalBytes`` punching them out of a real file."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from mreg.registry.download.freeable import Freeable
from mreg.registry.download.holes import LocalBytes

MiB = 2**20


def test_without_readers_everything_safe_is_freed() -> None:
    free = Freeable(keep=8)
    assert free.safe(10) == [(0, 10)] and free.freed == 10
    assert free.safe(10) == [] and free.safe(4) == []  # never back
    assert free.safe(25) == [(10, 25)]
    assert not free.on_disk(24) and free.on_disk(25)


def test_a_reader_close_behind_keeps_its_bytes_one_far_behind_does_not() -> None:
    free = Freeable(keep=8)
    reader = free.enter(0)
    assert free.safe(5) == [] and free.freed == 0  # within keep: the reader reads them from disk
    assert free.safe(20) == [(0, 12)] and free.freed == 12  # too far behind: it reads the bucket below 12
    assert not free.on_disk(0)
    assert free.move(reader, 16) == [(12, 16)]  # it read the bucket up to 16, and goes on from disk there
    assert free.on_disk(16) and free.leave(reader) == [(16, 20)]


def test_a_read_in_flight_pins_only_its_own_range() -> None:
    free = Freeable(keep=4)
    slow, other = free.enter(2), free.enter(3)
    free.pin(slow, 2, 6)
    assert free.safe(30) == [(0, 2), (6, 26)]  # the slow read's range stays; past it, the window moves on
    assert free.freed == 26 and not free.on_disk(6)
    assert free.move(other, 28) == [(26, 28)]
    assert free.unpin(slow, 6) == [(2, 6)]  # its read is over: freed, and it goes on from the bucket
    assert not free.on_disk(6)


def test_overlapping_reads_free_a_range_once_both_are_over() -> None:
    free = Freeable(keep=0)
    a, b = free.enter(2), free.enter(4)
    free.pin(a, 2, 6)
    free.pin(b, 4, 8)
    assert free.safe(10) == [(0, 2), (8, 10)]
    assert free.unpin(a, 6) == [(2, 4)]
    assert sorted(free.unpin(b, 8)) == [(4, 6), (4, 8)]


def test_gone_bytes_are_never_read_from_disk_whoever_is_behind() -> None:
    free = Freeable(keep=100)
    reader = free.enter(0)
    assert free.gone(10) == [(0, 10)] and not free.on_disk(9) and free.freed == 10
    assert free.safe(12) == [(10, 12)]  # a reader behind ``freed`` reads the bucket: it holds nothing back
    assert free.move(reader, 12) == [] and free.safe(20) == []  # back on disk at 12, within keep


def test_local_bytes_punch_the_freed_ranges_out_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "partial"
    data = os.urandom(4 * MiB)
    path.write_bytes(data)
    os.sync()
    local = LocalBytes(keep=MiB)
    local.attach(path)
    with local.reader(0):
        local.safe(4 * MiB)  # the reader at 0 is too far behind: all but the last MiB (``keep``) go
        assert os.stat(path).st_size == 4 * MiB and os.stat(path).st_blocks * 512 <= MiB + 64 * 1024
        assert path.read_bytes()[:3 * MiB] == bytes(3 * MiB) and path.read_bytes()[3 * MiB:] == data[3 * MiB:]
        assert not local.on_disk(2 * MiB)
    local.close()


def test_a_reader_reads_the_bytes_it_pinned(tmp_path: Path) -> None:
    path = tmp_path / "partial"
    data = os.urandom(4 * MiB)
    path.write_bytes(data)
    local = LocalBytes(keep=0)
    local.attach(path)

    async def read() -> bytes:
        fd = os.open(path, os.O_RDONLY)
        try:
            with local.reader(MiB) as reader:
                pending = asyncio.ensure_future(local.read(reader, fd, MiB, 2 * MiB))
                await asyncio.sleep(0)  # the read is in flight while the fill frees everything
                local.safe(4 * MiB)
                return await pending
        finally:
            os.close(fd)

    assert asyncio.run(read()) == data[MiB:2 * MiB]
    assert path.read_bytes() == bytes(4 * MiB)  # punched once the read was over
    local.close()
