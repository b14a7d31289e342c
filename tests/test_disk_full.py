"""A full disk is a one-line error and never publishes anything (a real tmpfs, so root only)."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from mreg.registry.download import FileSpec, download_file
from mreg.registry.errors import StoreError
from mreg.registry.upstream.hub import HubClient
from mreg.registry.repo import RepoRef
from mreg.registry.store import Store
from tests.pulling import FAST_RETRY, FAST_TUNING, pull_repo
from tests.testhub import TestHub

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
SMOLLM = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


async def test_pull_refuses_early_when_it_cannot_fit(test_hub: TestHub, small_disk: Path) -> None:
    with pytest.raises(StoreError, match="not enough disk space"):
        await pull_repo(test_hub.endpoint, small_disk, SMOLLM)
    assert not [p for p in (small_disk / "blobs").rglob("*") if p.is_file()]


async def test_disk_filling_up_mid_download_is_a_store_error(test_hub: TestHub, small_disk: Path) -> None:
    repo = RepoRef.parse(SMOLLM)
    head = test_hub.repo(SMOLLM).head
    name = next(p for p in head.files if p.endswith(".gguf"))
    entry = head.files[name]
    store = Store(small_disk)
    spec = FileSpec(path=name, size=entry.blob.size, git_oid=entry.oid, sha256=entry.blob.sha256)
    async with aiohttp.ClientSession() as session:
        client = HubClient(session, test_hub.endpoint, None, FAST_RETRY)
        with pytest.raises(StoreError, match=f"{name}: cannot write the partial download \\(disk full\\)"):
            await download_file(client, spec, lambda: client.locate(repo, head.sha, name), store,
                                asyncio.Semaphore(4), FAST_TUNING)
    assert not store.has_blob(entry.blob.sha256)
