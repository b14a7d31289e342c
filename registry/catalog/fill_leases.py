"""Fill leases: which replica fills a blob into the shared store, and how far it has got (#13).

A replica claims a blob's lease before it fetches the blob (``claim``): it becomes the holder, with the next
``fence``, unless a live lease (``filling``, not run out) is held already, which the caller then follows. A
lease that ran out (its holder died or stalled), or a finished one (``done``, ``failed``), is taken by the next
claim. The holder renews its lease as it commits bytes (``advance``) and ends it (``finish``, ``give_back``);
each of these names its fence and changes nothing once the fence moved on: False tells a stale holder to stop.
On PostgreSQL each of them also sends the key on ``CHANNEL`` (``NOTIFY``), to wake the followers at once.

The claim reads the row ``FOR UPDATE`` on PostgreSQL; SQLite's write transactions are exclusive anyway (``db``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from mreg.registry.catalog.models import FillLease as Row
from mreg.registry.catalog.models import utcnow
from mreg.registry.catalog.records import FillRecord

FINISHED_KEPT = timedelta(hours=1)
"""How long a finished lease's row stays (followers learn the outcome from it)."""
CHANNEL = "mreg_fills"
"""PostgreSQL's notification channel: each change of a lease's bytes or outcome sends its key, to wake followers."""


async def _woken(conn: AsyncConnection, key: str, changed: bool) -> bool:
    """If the lease ``changed``, notify its followers when the transaction commits (PostgreSQL; other databases
    have them look); ``changed``."""
    if changed and conn.dialect.name == "postgresql":
        await conn.execute(select(func.pg_notify(CHANNEL, key)))
    return changed


_COLUMNS = (Row.key, Row.owner, Row.holder, Row.fence, Row.size, Row.committed, Row.lease_until, Row.state, Row.error)


def _record(row: Sequence[Any], leader: bool) -> FillRecord:
    return FillRecord(*row, leader=leader)


def _held(key: str, fence: int) -> ColumnElement[bool]:
    return and_(Row.key == key, Row.fence == fence, Row.state == "filling")


async def claim(conn: AsyncConnection, key: str, owner: str, replica: str, size: int, seconds: float) -> FillRecord:
    """Hold ``key``'s lease for ``seconds`` as ``replica`` filling it for ``owner`` (a new fence), unless a live
    lease holds it: that one is returned, ``leader`` False."""
    now = utcnow()
    await conn.execute(delete(Row).where(Row.state != "filling", Row.lease_until < now - FINISHED_KEPT))
    row = (await conn.execute(select(*_COLUMNS).where(Row.key == key).with_for_update())).first()
    until = now + timedelta(seconds=seconds)
    if row is None:
        await conn.execute(insert(Row).values(key=key, owner=owner, holder=replica, fence=1, size=size, committed=0,
                                              lease_until=until, state="filling", error=None))
        fence = 1
    elif row.state == "filling" and row.lease_until > now:
        return _record(row, leader=False)
    else:  # ran out, or finished: the fill starts again (a resumed one at what the store still holds)
        fence = row.fence + 1
        committed = row.committed if row.state == "filling" and row.size == size else 0
        await conn.execute(update(Row).where(Row.key == key).values(
            owner=owner, holder=replica, fence=fence, size=size, committed=committed, lease_until=until,
            state="filling", error=None))
    found = await look(conn, key)
    assert found is not None and found.fence == fence  # the row is locked (or the database is: SQLite)
    return replace(found, leader=True)


async def look(conn: AsyncConnection, key: str) -> FillRecord | None:
    """``key``'s lease as it stands, or None if there is none."""
    row = (await conn.execute(select(*_COLUMNS).where(Row.key == key))).first()
    return None if row is None else _record(row, leader=False)


async def advance(conn: AsyncConnection, key: str, fence: int, committed: int, seconds: float) -> bool:
    """Renew the lease for ``seconds`` from now and record ``committed`` bytes; False if ``fence`` lost it."""
    result = await conn.execute(update(Row).where(_held(key, fence)).values(
        committed=committed, lease_until=utcnow() + timedelta(seconds=seconds)))
    return await _woken(conn, key, result.rowcount > 0)


async def finish(conn: AsyncConnection, key: str, fence: int, error: str | None) -> bool:
    """End the fill: ``done`` (the blob is published), or ``failed`` with ``error``; False if the lease was lost."""
    done = {"state": "done", "committed": Row.size} if error is None else {"state": "failed"}
    result = await conn.execute(update(Row).where(_held(key, fence)).values(error=error, lease_until=utcnow(), **done))
    return await _woken(conn, key, result.rowcount > 0)


async def give_back(conn: AsyncConnection, key: str, fence: int) -> bool:
    """End the lease now, the fill unfinished (the holder stops): the next claim takes it over at once."""
    result = await conn.execute(update(Row).where(_held(key, fence)).values(lease_until=utcnow()))
    return await _woken(conn, key, result.rowcount > 0)
