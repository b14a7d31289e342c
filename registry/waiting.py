"""Waiting for an ``asyncio.Event`` with a time limit, without losing a cancellation.

On Python 3.11, ``asyncio.wait_for(event.wait(), t)`` swallows a cancellation that arrives in the same
loop turn as the event being set: it returns instead of raising, and the cancelled task runs on. A daemon
whose shutdown cancels its scheduler just as a finishing worker wakes it would then wait forever for a
scheduler that never stops (seen in a test run). ``asyncio.timeout`` has no such gap.
"""

from __future__ import annotations

import asyncio


async def wait_until_set(event: asyncio.Event, seconds: float) -> bool:
    """Wait for ``event`` for at most ``seconds``; True if it was set. A cancellation always propagates."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True
