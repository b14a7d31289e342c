"""Multi-source files end to end: two test hubs holding the same bytes, each behind its own capped link.

How parts are shared and split is tested without sockets in tests/test_scheduler.py; these tests show
the real downloader carrying those decisions out (cut responses, stopped stalls, dropped sources).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mreg.registry.errors import IntegrityError, UpstreamUnavailableError
from mreg.registry.upstream.hub import HubClient
from mreg.registry.pull import PullOptions, PullResult, pull
from mreg.registry.repo import RepoRef
from mreg.registry.workspace import open_workspace
from tests.mreg_cli import mreg
from tests.pulling import FAST_RETRY, FAST_TUNING, settings_for
from tests.testhub import Blob, HubRepo, TestHub

REPO = "multi/weights"
NAME = "model.safetensors"
MB = 1_000_000


@pytest.fixture(scope="module")
def blob() -> Blob:
    return Blob.from_bytes(random.Random(8).randbytes(16 * MB))


@pytest.fixture
def hubs(blob: Blob) -> Iterator[tuple[TestHub, TestHub]]:
    """Two hubs (each its own hub and CDN) serving the same repo; the second under another commit."""
    with TestHub() as first, TestHub() as second:
        first.add_repo(HubRepo(REPO)).commit({NAME: blob, "config.json": b"{}"})
        second.add_repo(HubRepo(REPO)).commit({NAME: blob, "config.json": b"{}"}, message="mirrored")
        yield first, second


async def pull_from(home: Path, upstream: TestHub, *mirrors: TestHub) -> PullResult:
    """Pull REPO from ``upstream`` with ``mirrors`` as extra sources (mreg's real client, store, catalog)."""
    settings = settings_for(upstream.endpoint, home)
    async with open_workspace(settings, None, FAST_TUNING.connections * 3, FAST_RETRY) as ws:
        options = PullOptions(tuning=FAST_TUNING, mirrors=tuple(ws.client.mirror(m.endpoint) for m in mirrors))
        return await pull(RepoRef.parse(REPO), options, client=ws.client, store=ws.store, catalog=ws.catalog)


def stored_sha256(result: PullResult) -> str:
    return hashlib.sha256((result.path / NAME).read_bytes()).hexdigest()


async def test_a_fast_source_takes_over_the_tail_of_a_slow_one(hubs: tuple[TestHub, TestHub], blob: Blob,
                                                               tmp_path: Path) -> None:
    fast, slow = hubs
    fast.faults.bandwidth, slow.faults.bandwidth = 16 * MB, 1 * MB
    result = await pull_from(tmp_path, slow, fast)
    assert stored_sha256(result) == blob.sha256  # the slow source's responses were cut where the tails begin
    # The slow source's 8 connections start on 8 of the 31 parts; without taking over their ends it
    # would serve 26 % of the file. At 1:16 its fair share is 6 %.
    assert result.by_source[slow.endpoint] < blob.size * 0.16
    served = {hub.endpoint: hub.stats.bytes_by_sha256[blob.sha256] for hub in hubs}
    assert result.dropped == {} and set(result.by_source) == set(served)
    assert sum(served.values()) <= blob.size * 1.1  # cut responses waste little
    assert any(r.range and not r.range.startswith("bytes=0-") for r in fast.stats.find(host="cdn"))


async def test_a_source_dying_midway_leaves_the_file_to_the_other(hubs: tuple[TestHub, TestHub], blob: Blob,
                                                                  tmp_path: Path) -> None:
    survivor, doomed = hubs
    survivor.faults.bandwidth, doomed.faults.bandwidth = 4 * MB, 4 * MB

    async def kill_once_serving() -> None:
        deadline = time.monotonic() + 10
        while doomed.stats.cdn_bytes < 2 * MB and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await asyncio.to_thread(doomed.stop)

    killer = asyncio.create_task(kill_once_serving())
    result = await pull_from(tmp_path, survivor, doomed)
    await killer
    assert stored_sha256(result) == blob.sha256
    assert result.by_source[doomed.endpoint] >= 2 * MB
    assert result.by_source[survivor.endpoint] >= blob.size - result.by_source[doomed.endpoint]
    assert list(result.dropped) == [doomed.endpoint]


async def test_corrupt_bytes_from_a_mirror_are_fetched_again_from_the_upstream(
        hubs: tuple[TestHub, TestHub], blob: Blob, tmp_path: Path) -> None:
    honest, liar = hubs
    honest.faults.bandwidth, liar.faults.bandwidth = 8 * MB, 8 * MB
    liar.faults.corrupt(blob.sha256, route="cdn")
    result = await pull_from(tmp_path, honest, liar)
    assert stored_sha256(result) == blob.sha256
    assert list(result.dropped) == [liar.endpoint] and "failed verification" in result.dropped[liar.endpoint]
    assert honest.stats.bytes_by_sha256[blob.sha256] >= blob.size  # the second pass, from the upstream alone
    assert result.by_source[liar.endpoint] == liar.stats.bytes_by_sha256[blob.sha256] > 0


async def test_corrupt_bytes_from_the_upstream_fail_the_file_and_publish_nothing(
        hubs: tuple[TestHub, TestHub], blob: Blob, tmp_path: Path) -> None:
    liar, honest = hubs
    honest.faults.bandwidth, liar.faults.bandwidth = 8 * MB, 8 * MB
    liar.faults.corrupt(blob.sha256, route="cdn")
    with pytest.raises(IntegrityError, match=f"{NAME}: sha256 mismatch .*from {liar.endpoint} alone as well"):
        await pull_from(tmp_path, liar, honest)
    assert not list((tmp_path / "blobs").rglob(blob.sha256))
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.stat().st_size == blob.size]
    assert not list((tmp_path / "hub").rglob(NAME))


async def test_every_source_failing_fails_the_file(hubs: tuple[TestHub, TestHub], tmp_path: Path) -> None:
    first, second = hubs
    for hub in hubs:
        hub.faults.fail(503, count=None, route="cdn")
    with pytest.raises(UpstreamUnavailableError, match=f"{NAME}: every source failed") as failed:
        await pull_from(tmp_path, first, second)
    assert first.endpoint in str(failed.value) and second.endpoint in str(failed.value)


async def test_a_mirror_without_the_repo_is_left_out(hubs: tuple[TestHub, TestHub], blob: Blob,
                                                      tmp_path: Path) -> None:
    upstream, mirror = hubs
    mirror.repos.clear()
    result = await pull_from(tmp_path, upstream, mirror)
    assert stored_sha256(result) == blob.sha256
    assert mirror.stats.cdn_bytes == 0 and result.by_source == {upstream.endpoint: result.fetched}
    assert list(result.dropped) == [mirror.endpoint] and "not found" in result.dropped[mirror.endpoint]


def test_cli_also_from_says_which_source_served_what(hubs: tuple[TestHub, TestHub], blob: Blob, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    upstream, mirror = hubs
    upstream.faults.bandwidth, mirror.faults.bandwidth = 8 * MB, 8 * MB
    monkeypatch.setenv("HF_ENDPOINT", upstream.endpoint)
    monkeypatch.setenv("MREG_HOME", str(tmp_path / "home"))
    upstream.tokens["hf_secret_for_upstream_only"] = "alice"  # the mirror answers 401 to a token it does not know
    monkeypatch.setenv("HF_TOKEN", "hf_secret_for_upstream_only")
    code, out, err = mreg("pull", REPO, "--connections", "8", "--also-from", mirror.endpoint)
    assert code == 0, err
    assert f"from {upstream.endpoint}" in err and f"from {mirror.endpoint}" in err
    assert hashlib.sha256((Path(out.strip().splitlines()[-1]) / NAME).read_bytes()).hexdigest() == blob.sha256
    assert mirror.stats.bytes_by_sha256[blob.sha256] > 0  # so the mirror never saw the token


def test_hub_client_mirror_sends_no_token(hubs: tuple[TestHub, TestHub]) -> None:
    upstream, mirror = hubs
    client = HubClient(None, upstream.endpoint, "hf_token")  # type: ignore[arg-type]
    assert client.has_token and not client.mirror(mirror.endpoint).has_token


async def test_an_interrupted_two_source_download_resumes_from_one(hubs: tuple[TestHub, TestHub], blob: Blob,
                                                                   tmp_path: Path) -> None:
    first, second = hubs
    first.faults.bandwidth, second.faults.bandwidth = 4 * MB, 1 * MB
    interrupted = asyncio.create_task(pull_from(tmp_path, first, second))
    deadline = time.monotonic() + 20
    while first.stats.cdn_bytes + second.stats.cdn_bytes < blob.size // 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    interrupted.cancel()
    with pytest.raises(asyncio.CancelledError):
        await interrupted
    served = first.stats.cdn_bytes + second.stats.cdn_bytes
    first.faults.bandwidth = None
    result = await pull_from(tmp_path, first)
    assert stored_sha256(result) == blob.sha256
    assert result.fetched <= blob.size - served + blob.size * 0.15


async def test_a_stalled_source_does_not_hold_the_file(hubs: tuple[TestHub, TestHub], blob: Blob,
                                                       tmp_path: Path) -> None:
    healthy, stalled = hubs
    healthy.faults.bandwidth = 8 * MB
    stalled.faults.stall(after_bytes=0, seconds=60, count=None, route="cdn")
    settings = settings_for(healthy.endpoint, tmp_path)
    patient = dataclasses.replace(FAST_TUNING, stall_timeout=60.0)  # the stalled fetches are not timed out
    async with open_workspace(settings, None, patient.connections * 2, FAST_RETRY) as ws:
        options = PullOptions(tuning=patient, mirrors=(ws.client.mirror(stalled.endpoint),))
        result = await pull(RepoRef.parse(REPO), options, client=ws.client, store=ws.store, catalog=ws.catalog)
    assert stored_sha256(result) == blob.sha256
    # Its fetches were taken over and stopped before the stall ended: it never sent a body byte.
    assert stalled.stats.cdn_bytes == 0 and stalled.stats.find(host="cdn")
