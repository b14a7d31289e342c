"""The scrub over a real local blob store: every blob re-hashed, the damaged ones quarantined, no faster
than its rate."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from mreg.registry.blobs import LocalBlobStore
from mreg.registry.download.throttle import BURST_SECONDS, TokenBucket
from mreg.registry.integrity import scrub

RATE = 2_000_000


async def stored(blobs: LocalBlobStore, data: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()
    blobs.tmp_dir.mkdir(parents=True, exist_ok=True)
    source = blobs.tmp_dir / os.urandom(6).hex()
    source.write_bytes(data)
    await blobs.publish(sha, source)
    return sha


async def test_scrub_quarantines_only_damaged_blobs_at_its_rate(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path / "home")
    intact = await stored(blobs, os.urandom(1_500_000))
    damaged = await stored(blobs, os.urandom(1_500_000))
    path = blobs.path(damaged)
    path.chmod(0o644)
    with path.open("r+b") as f:
        f.seek(1_000_000)
        f.write(b"\0")  # bit rot in the middle: the size stays

    started = time.monotonic()
    checks = [check async for check in scrub(blobs, TokenBucket(RATE))]
    elapsed = time.monotonic() - started

    assert sorted((c.info.sha256, c.damaged) for c in checks) == sorted([(intact, False), (damaged, True)])
    assert elapsed >= (3_000_000 - RATE * BURST_SECONDS) / RATE  # 3 MB at 2 MB/s, less the first burst
    assert blobs.path(intact).exists() and not path.exists() and (blobs.quarantine_dir / damaged).exists()
    assert [c.info.sha256 async for c in scrub(blobs)] == [intact]
