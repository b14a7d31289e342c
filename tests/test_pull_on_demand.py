"""`registry.pull` given a `CatalogOnDemand` (what `mreg pull` passes, #16): the large files the store lacks are
fetched before the catalog is imported and opened, then everything is recorded as a pull with an open catalog
records it; a failure before the catalog was opened is recorded once it is."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from mreg.registry.catalog import Catalog
from mreg.registry.errors import IntegrityError, UpstreamUnavailableError
from mreg.registry.local import CatalogOnDemand, catalog_on_demand
from mreg.registry.pull import PullOptions, PullResult, pull
from mreg.registry.repo import RepoRef
from mreg.registry.store import Store
from mreg.registry.upstream.hub import HubClient
from mreg.registry.workspace import http_session
from tests.pulling import FAST_RETRY, FAST_TUNING, settings_for, tree_bytes
from tests.testhub import TestHub

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


class CatalogWatch:
    """A PullProgress noting, at every byte reported, whether the catalog's database exists yet."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self.catalog_seen: dict[str, list[bool]] = {}

    def start(self, repo: RepoRef, commit: str, files: Sequence[tuple[str, int]]) -> None:
        pass

    def advance(self, path: str, nbytes: int) -> None:
        self.catalog_seen.setdefault(path, []).append(self.database.exists())

    def file_done(self, path: str, fetched: int) -> None:
        pass


async def _pull_on_demand(hub: TestHub, home: Path, progress: CatalogWatch | None = None) -> PullResult:
    settings = settings_for(hub.endpoint, home)
    store = Store(home)
    async with catalog_on_demand(settings) as catalog, http_session(FAST_TUNING.connections) as session:
        client = HubClient(session, hub.endpoint, None, FAST_RETRY)
        options = PullOptions(tuning=FAST_TUNING)
        if progress is None:
            return await pull(RepoRef.parse(MINILM), options, client=client, store=store, catalog=catalog)
        return await pull(RepoRef.parse(MINILM), options, client=client, store=store, catalog=catalog,
                          progress=progress)


def _rows(home: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(home / "catalog.db") as db:
        return db.execute(sql).fetchall()


async def test_the_weights_the_store_lacks_are_fetched_before_the_catalog_is_opened(test_hub: TestHub,
                                                                                   tmp_path: Path) -> None:
    head = test_hub.repo(MINILM).head
    lfs = {path for path, entry in head.files.items() if entry.lfs}
    watch = CatalogWatch(tmp_path / "catalog.db")
    result = await _pull_on_demand(test_hub, tmp_path, watch)
    assert tree_bytes(result.path) == {path: e.blob.read(0, e.blob.size) for path, e in head.files.items()}
    assert lfs and all(watch.catalog_seen[path] and not any(watch.catalog_seen[path]) for path in lfs)
    others = set(head.files) - lfs  # fetched after the catalog said they were not in the store
    assert others and all(all(watch.catalog_seen[path]) for path in others)
    catalog = await Catalog.open(settings_for(test_hub.endpoint, tmp_path).database_url)
    try:
        files = {f.path: (f.state, f.sha256) for f in await catalog.revision_files(RepoRef.parse(MINILM), head.sha)}
    finally:
        await catalog.close()
    assert files == {f.path: ("complete", f.sha256) for f in result.files}
    assert _rows(tmp_path, "SELECT status, bytes_fetched FROM downloads") == [("complete", result.fetched)]
    assert _rows(tmp_path, "SELECT state FROM revisions") == [("complete",)]
    cdn_before = test_hub.stats.cdn_bytes
    again = await _pull_on_demand(test_hub, tmp_path)  # what the catalog records is found in the store again
    assert again.fetched == 0 and test_hub.stats.cdn_bytes == cdn_before


@pytest.mark.parametrize("fault", ["corrupt", "outage"])
async def test_a_failure_of_the_files_fetched_first_is_recorded_in_the_catalog(test_hub: TestHub, tmp_path: Path,
                                                                            fault: str) -> None:
    """Corrupt bytes fail once they are all in (the catalog is being opened); a CDN outage before."""
    if fault == "corrupt":
        test_hub.faults.corrupt("model.safetensors")
        expected: tuple[type[Exception], str] = (IntegrityError, "model.safetensors: sha256 mismatch")
    else:
        test_hub.faults.fail(503, count=None, route="cdn")
        expected = (UpstreamUnavailableError, "HTTP 503")
    with pytest.raises(expected[0], match=expected[1]):
        await _pull_on_demand(test_hub, tmp_path)
    [(status, error)] = _rows(tmp_path, "SELECT status, error FROM downloads")
    assert status == "failed" and expected[1] in error
    assert _rows(tmp_path, "SELECT state FROM revisions") == [("pending",)]
    assert not list((tmp_path / "hub").rglob("model.safetensors"))


async def test_a_catalog_on_demand_is_opened_once_and_closed_only_if_it_was(tmp_path: Path) -> None:
    settings = settings_for("http://127.0.0.1:9", tmp_path)
    async with catalog_on_demand(settings):
        pass
    assert not (tmp_path / "catalog.db").exists()
    on_demand = CatalogOnDemand(settings.database_url)
    first, second = await asyncio.gather(on_demand.get(), on_demand.get())
    assert first is second and await on_demand.get() is first
    await on_demand.close()
