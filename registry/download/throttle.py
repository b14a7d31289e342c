"""A bandwidth cap shared by many downloads: a token bucket, its arithmetic apart from its waiting.

    bucket = TokenBucket(rate=50e6)          # bytes per second, across every caller
    await bucket.take(len(chunk))            # after each chunk received: sleeps while over the rate
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

BURST_SECONDS = 0.25
"""How many seconds of traffic a bucket that has been idle lets through at once."""


class TokenBucket:
    """Lets ``rate`` bytes per second through on average, ``rate * BURST_SECONDS`` at once after idling.

    Takers go into debt and wait it off in turn (first come, first served), so chunks larger than
    the burst are fine and no taker starves.
    """

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        if not rate > 0:
            raise ValueError(f"a bandwidth cap must be positive, not {rate!r}")
        self.rate = rate
        self.capacity = rate * BURST_SECONDS
        self._clock = clock
        self._tokens = self.capacity
        self._stamp = clock()
        self._turn = asyncio.Lock()

    def reserve(self, nbytes: int) -> float:
        """Take ``nbytes`` now; how many seconds to wait before using them (0 when within the rate)."""
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate) - nbytes
        self._stamp = now
        return max(0.0, -self._tokens / self.rate)

    async def take(self, nbytes: int) -> None:
        """Wait until ``nbytes`` more fit under the cap."""
        async with self._turn:
            delay = self.reserve(nbytes)
            if delay > 0:
                await asyncio.sleep(delay)
