"""registry.waiting: a cancellation that meets the event being set still cancels the waiter."""

from __future__ import annotations

import asyncio

import pytest

from mreg.registry.waiting import wait_until_set


async def test_a_cancellation_in_the_turn_the_event_is_set_is_not_swallowed() -> None:
    event = asyncio.Event()
    waiter = asyncio.create_task(wait_until_set(event, 60))
    await asyncio.sleep(0)  # the waiter waits
    event.set()  # as a finishing worker wakes a scheduler that shutdown cancels in the same turn
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter


async def test_it_says_whether_the_event_was_set() -> None:
    event = asyncio.Event()
    assert await wait_until_set(event, 0.01) is False
    event.set()
    assert await wait_until_set(event, 60) is True
