"""Eviction on a shared store, in the catalog (SQLite and PostgreSQL: `catalog_url`): the fenced lease, in-use
marks, and a doomed blob's life: reclaimed by a file recorded in its grace, claimed only when unreferenced and
unused, refused to a file recorded once its deletion began, stored again after it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from mreg.registry.catalog import Catalog, FileRecord
from mreg.registry.catalog.models import utcnow
from mreg.registry.errors import BlobDeletedError
from mreg.registry.repo import RepoRef

REPO = RepoRef.parse("org/model")
COMMIT = "a" * 40
SHA, OTHER = "1" * 64, "2" * 64
LATER = timedelta(seconds=1)


@pytest.fixture
async def catalog(catalog_url: str) -> AsyncIterator[Catalog]:
    opened = await Catalog.open(catalog_url)
    try:
        await opened.record_revision(REPO, COMMIT, [FileRecord("model.bin", 10, "b" * 40, lfs_sha256=SHA)])
        yield opened
    finally:
        await opened.close()


async def test_one_replica_holds_the_lease_until_it_ends_or_runs_out(catalog: Catalog) -> None:
    fence, round_id = await catalog.take_eviction_lease("a", 60) or (0, 0)
    assert fence == 1 and await catalog.take_eviction_lease("b", 60) is None
    assert await catalog.last_eviction() == 0 and await catalog.evicting(round_id, fence, 60)
    assert await catalog.last_eviction() == round_id
    await catalog.end_eviction_round(round_id, fence, 20)
    taken = await catalog.take_eviction_lease("b", 0.001)
    assert taken is not None and taken[0] == 2
    assert await catalog.claim_deletion(SHA, taken[0], 60) == "lost"  # its lease ran out
    assert not await catalog.evicting(taken[1], taken[0], 60)
    again = await catalog.take_eviction_lease("a", 60)
    assert again is not None and again[0] == 3
    assert await catalog.claim_deletion(SHA, 2, 60) == "lost"  # a former holder's fence deletes nothing
    rounds = await catalog.eviction_rounds()
    assert [(r, f) for r, f, _, _ in rounds] == [("a", 1), ("b", 2), ("a", 3)]
    assert all(ended is not None and ended <= nxt for (_, _, _, ended), (_, _, nxt, _) in zip(rounds, rounds[1:]))
    assert await catalog.last_eviction() == round_id


async def test_a_file_recorded_in_the_grace_reclaims_the_blob(catalog: Catalog) -> None:
    await catalog.doom_blobs({SHA: 10, OTHER: 5}, timedelta(days=1))
    assert await catalog.doomed_bytes() == 15
    await catalog.mark_file_complete(REPO, COMMIT, "model.bin", SHA, 10)
    fence, _ = await catalog.take_eviction_lease("a", 60) or (0, 0)
    assert await catalog.doomed_due(utcnow() + LATER) == [OTHER]
    assert await catalog.claim_deletion(OTHER, fence, 60) == "claimed"


async def test_a_blob_a_replica_reads_is_not_claimed(catalog: Catalog) -> None:
    await catalog.doom_blobs({SHA: 10}, timedelta(days=1))
    fence, _ = await catalog.take_eviction_lease("a", 60) or (0, 0)
    await catalog.write_marks("b", [(REPO, COMMIT, SHA)], 60)
    assert await catalog.claim_deletion(SHA, fence, 60) == "kept"
    assert await catalog.doomed_due(utcnow() - LATER) == []  # its grace starts again
    await catalog.write_marks("b", [], 60)
    assert await catalog.live_marks() == set()
    assert await catalog.claim_deletion(SHA, fence, 60) == "claimed"


async def test_a_file_recorded_once_the_deletion_began_is_refused_until_the_blob_is_stored_again(
        catalog: Catalog) -> None:
    await catalog.doom_blobs({SHA: 10}, timedelta(days=1))
    fence, _ = await catalog.take_eviction_lease("a", 60) or (0, 0)
    assert await catalog.claim_deletion(SHA, fence, 60) == "claimed"
    with pytest.raises(BlobDeletedError) as deleting:
        await catalog.mark_file_complete(REPO, COMMIT, "model.bin", SHA, 10)
    assert not deleting.value.deleted and not await catalog.forget_deleted(SHA)
    assert await catalog.doomed_due(utcnow() - LATER) == [SHA]  # a killed round's deletion is done again
    await catalog.blob_deleted(SHA)
    with pytest.raises(BlobDeletedError) as deleted:
        await catalog.mark_file_complete(REPO, COMMIT, "model.bin", SHA, 10)
    assert deleted.value.deleted
    assert await catalog.referenced_blobs() == set()  # the refused write left nothing
    assert await catalog.forget_deleted(SHA)  # the caller found the object stored again since
    await catalog.mark_file_complete(REPO, COMMIT, "model.bin", SHA, 10)
    assert await catalog.referenced_blobs() == {SHA}
