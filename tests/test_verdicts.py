"""The in-memory access-verdict cache behind the ``Verdicts`` interface."""

from __future__ import annotations

import time

from mreg.daemon.serving.upstream import Answer
from mreg.daemon.verdicts import MemoryVerdicts, Verdict, Verdicts

GATED = Answer(403, {"X-Error-Code": "GatedRepo"}, None, b"")


async def test_the_newest_verdict_per_key_is_kept() -> None:
    verdicts: Verdicts = MemoryVerdicts(ttl=60)
    key = ("anonymous", "model", "org/gated")
    assert await verdicts.get(key) is None
    await verdicts.put(key, Verdict(GATED, time.time() - 5))
    await verdicts.put(("t" * 64, "model", "org/gated"), Verdict(None, time.time()))
    assert (await verdicts.get(key)).refusal == GATED  # type: ignore[union-attr]
    allowed = Verdict(None, time.time())
    await verdicts.put(key, allowed)
    assert await verdicts.get(key) == allowed


async def test_a_full_cache_drops_stale_verdicts_only() -> None:
    verdicts = MemoryVerdicts(ttl=60, limit=3)
    now = time.time()
    stale, fresh = ("a", "model", "org/old"), ("b", "model", "org/new")
    await verdicts.put(stale, Verdict(None, now - 3600))
    await verdicts.put(fresh, Verdict(GATED, now))
    await verdicts.put(("c", "model", "org/x"), Verdict(None, now))
    await verdicts.put(("d", "model", "org/y"), Verdict(None, now))  # full: the stale one goes
    assert await verdicts.get(stale) is None
    assert (await verdicts.get(fresh)).refusal == GATED  # type: ignore[union-attr]
    assert await verdicts.get(("d", "model", "org/y")) is not None
