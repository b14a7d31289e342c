"""Time limits that never lose a cancellation.

On Python 3.11, ``asyncio.wait_for(aw, t)`` swallows a cancellation that arrives in the same loop turn as
``aw`` finishing: it returns ``aw``'s result instead of raising, and the cancelled task runs on. A daemon
whose shutdown cancels its scheduler just as a finishing worker wakes it would then wait forever for a
scheduler that never stops (seen in a test run). ``asyncio.timeout`` has no such gap; every time limit on
an await goes through ``within``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def within(awaitable: Awaitable[T], seconds: float) -> T:
    """``await awaitable``, raising TimeoutError after ``seconds``; a cancellation always propagates."""
    async with asyncio.timeout(seconds):
        return await awaitable


async def wait_until_set(event: asyncio.Event, seconds: float) -> bool:
    """Wait for ``event`` for at most ``seconds``; True if it was set."""
    try:
        await within(event.wait(), seconds)
    except TimeoutError:
        return False
    return True
