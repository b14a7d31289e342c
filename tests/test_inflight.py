"""``MemoryInFlight``: one leader per content key, fencing tokens that only grow, written bytes noted by
the current leader alone, and release by the lease that holds the key."""

from __future__ import annotations

from mreg.daemon.serving.inflight import InFlight, MemoryInFlight


async def test_the_first_claim_leads_and_later_ones_follow() -> None:
    inflight: InFlight = MemoryInFlight()
    leader = await inflight.claim("a")
    follower = await inflight.claim("a")
    other = await inflight.claim("b")
    assert leader.leader and other.leader and not follower.leader
    assert follower.token == leader.token and other.token != leader.token
    assert await inflight.written("a") == 0 and await inflight.written("c") is None


async def test_only_the_leader_notes_written_bytes_and_never_backwards() -> None:
    inflight = MemoryInFlight()
    leader = await inflight.claim("a")
    follower = await inflight.claim("a")
    inflight.note(leader, 100)
    inflight.note(follower, 500)
    inflight.note(leader, 40)
    assert await inflight.written("a") == 100


async def test_release_frees_the_key_and_a_new_leader_fences_the_old_one() -> None:
    inflight = MemoryInFlight()
    old = await inflight.claim("a")
    follower = await inflight.claim("a")
    await inflight.release(follower)  # a follower's release changes nothing
    assert await inflight.written("a") == 0
    await inflight.release(old)
    assert await inflight.written("a") is None
    new = await inflight.claim("a")
    assert new.leader and new.token > old.token
    inflight.note(old, 999)  # the fenced leader is ignored
    await inflight.release(old)
    assert await inflight.written("a") == 0
    inflight.note(new, 7)
    assert await inflight.written("a") == 7
