"""The catalog's statements for failed transfers: content a Range request must not continue (#14.1).

A row is written only when a transfer fails after sending bytes (never on a successful one); writing
one deletes the rows past their memory, so the table holds at most the failures of the last hour.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from mreg.registry.catalog.models import FailedTransfer


async def remember(conn: AsyncConnection, key: str, now: datetime, memory: timedelta) -> None:
    """Record that the transfer of ``key`` failed at ``now``; forget failures older than ``memory``."""
    await conn.execute(delete(FailedTransfer).where((FailedTransfer.key == key) | (FailedTransfer.failed_at < now - memory)))
    await conn.execute(insert(FailedTransfer).values(key=key, failed_at=now))


async def failed_since(conn: AsyncConnection, key: str, since: datetime) -> bool:
    """Whether a transfer of ``key`` failed at ``since`` or later."""
    found = await conn.scalar(select(FailedTransfer.key).where(FailedTransfer.key == key,
                                                               FailedTransfer.failed_at >= since))
    return found is not None
