"""Fill leases in the catalog (#13), on SQLite and PostgreSQL: the first claim of a blob leads it, the next ones
follow the live lease; a lease that ran out or ended is taken over with a new fence (a killed holder's committed
bytes kept); a stale holder's writes change nothing; concurrent claims make one leader; PostgreSQL notifies each
change to listeners."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy import update

from mreg.registry.catalog import Catalog
from mreg.registry.catalog.db import make_engine, writer
from mreg.registry.catalog.models import FillLease
from mreg.registry.catalog.models import utcnow
from mreg.registry.errors import UsageError
from mreg.registry.waiting import within

KEY = "ab" * 32
SIZE = 1000


@pytest_asyncio.fixture
async def catalog(catalog_url: str) -> AsyncIterator[Catalog]:
    opened = await Catalog.open(catalog_url)
    try:
        yield opened
    finally:
        await opened.close()


async def run_out(url: str) -> None:
    """Make every lease end now, as if its holder had died that long ago."""
    engine = make_engine(url)
    try:
        async with writer(engine).begin() as conn:
            await conn.execute(update(FillLease).values(lease_until=utcnow()))
    finally:
        await engine.dispose()


async def test_the_first_claim_leads_and_the_next_follow(catalog: Catalog) -> None:
    lead = await catalog.claim_fill(KEY, "org/a", "r1", SIZE, 5)
    assert (lead.leader, lead.fence, lead.holder, lead.committed, lead.state) == (True, 1, "r1", 0, "filling")
    assert await catalog.advance_fill(KEY, 1, 400, 5)
    follow = await catalog.claim_fill(KEY, "org/a", "r2", SIZE, 5)
    assert (follow.leader, follow.fence, follow.holder, follow.committed, follow.owner) == (False, 1, "r1", 400, "org/a")
    assert (await catalog.fill_lease(KEY)).holder == "r1"  # type: ignore[union-attr]
    assert await catalog.fill_lease("cd" * 32) is None


async def test_a_lease_that_ran_out_is_taken_over_and_the_stale_holder_changes_nothing(
        catalog: Catalog, catalog_url: str) -> None:
    await catalog.claim_fill(KEY, "org/a", "r1", SIZE, 5)
    assert await catalog.advance_fill(KEY, 1, 300, 5)
    await run_out(catalog_url)
    taken = await catalog.claim_fill(KEY, "org/a", "r2", SIZE, 5)
    assert (taken.leader, taken.fence, taken.holder, taken.committed) == (True, 2, "r2", 300)  # resumes there
    assert not await catalog.advance_fill(KEY, 1, 900, 5)  # the old holder, back from a stall
    assert not await catalog.finish_fill(KEY, 1, "it failed")
    assert not await catalog.give_back_fill(KEY, 1)
    now = await catalog.fill_lease(KEY)
    assert now is not None and (now.holder, now.fence, now.committed, now.state) == ("r2", 2, 300, "filling")
    assert await catalog.advance_fill(KEY, 2, 600, 5)
    assert (await catalog.fill_lease(KEY)).committed == 600  # type: ignore[union-attr]


async def test_a_finished_fill_tells_followers_and_a_later_claim_starts_again(catalog: Catalog) -> None:
    await catalog.claim_fill(KEY, "org/a", "r1", SIZE, 5)
    assert await catalog.advance_fill(KEY, 1, 600, 5)
    assert await catalog.finish_fill(KEY, 1)
    done = await catalog.fill_lease(KEY)
    assert done is not None and (done.state, done.error, done.committed) == ("done", None, SIZE)
    again = await catalog.claim_fill(KEY, "org/b", "r2", SIZE, 5)
    assert (again.leader, again.fence, again.committed, again.owner) == (True, 2, 0, "org/b")
    assert await catalog.finish_fill(KEY, 2, "sha256 mismatch\nand more")
    failed = await catalog.fill_lease(KEY)
    assert failed is not None and (failed.state, failed.error) == ("failed", "sha256 mismatch")


async def test_a_lease_given_back_is_taken_at_once(catalog: Catalog) -> None:
    await catalog.claim_fill(KEY, "org/a", "r1", SIZE, 60)
    assert await catalog.give_back_fill(KEY, 1)
    taken = await catalog.claim_fill(KEY, "org/a", "r2", SIZE, 60)
    assert (taken.leader, taken.fence) == (True, 2)


async def test_concurrent_claims_make_one_leader(catalog_url: str) -> None:
    catalogs = [await Catalog.open(catalog_url) for _ in range(4)]  # one per replica
    try:
        claims = await asyncio.gather(*(c.claim_fill(KEY, "org/a", f"r{i}", SIZE, 5) for i, c in enumerate(catalogs)))
    finally:
        for c in catalogs:
            await c.close()
    assert sum(c.leader for c in claims) == 1
    assert {c.fence for c in claims} == {1} and len({c.holder for c in claims}) == 1


@pytest.mark.parametrize("key, owner, replica, size, lease", [
    ("nothex", "org/a", "r", 1, 5), (KEY, "", "r", 1, 5), (KEY, "org/a", "", 1, 5), (KEY, "org/a", "r", -1, 5),
    (KEY, "org/a", "r", 1, 0), (KEY, "x" * 301, "r", 1, 5)])
async def test_bad_claims_are_usage_errors(catalog: Catalog, key: str, owner: str, replica: str, size: int,
                                           lease: float) -> None:
    with pytest.raises(UsageError):
        await catalog.claim_fill(key, owner, replica, size, lease)


async def test_postgresql_notifies_each_change_and_sqlite_has_followers_look(catalog: Catalog,
                                                                              catalog_url: str) -> None:
    heard: asyncio.Queue[str] = asyncio.Queue()
    async with catalog.fill_wakeups(heard.put_nowait) as notified:
        assert notified == catalog_url.startswith("postgresql")
        leader = await Catalog.open(catalog_url)  # another replica
        try:
            await leader.claim_fill(KEY, "org/a", "r1", SIZE, 5)
            assert await leader.advance_fill(KEY, 1, 100, 5)
            assert not await leader.advance_fill(KEY, 7, 200, 5)  # refused: nothing changed, nobody woken
            assert await leader.finish_fill(KEY, 1)
            assert await leader.claim_fill("cd" * 32, "org/a", "r1", SIZE, 5)
            assert await leader.give_back_fill("cd" * 32, 1)
        finally:
            await leader.close()
        if notified:
            assert [await within(heard.get(), 10) for _ in range(3)] == [KEY, KEY, "cd" * 32]
        assert heard.empty()
