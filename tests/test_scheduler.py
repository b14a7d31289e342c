"""The downloader's scheduler without sockets: events in, decisions out, the clock passed in.

The first tests drive it by hand; the last play whole multi-source downloads on a virtual clock
(``tests/scheduler_sim.py``): shares follow speed, a fast source takes over a slow one's tail, a stalled
or dying source does not hold the file. End-to-end counterparts run in tests/test_multisource.py.
"""

from __future__ import annotations

import ast
from pathlib import Path

from mreg.registry.download import scheduler as scheduler_module
from mreg.registry.download.scheduler import LIVE_RATE_AFTER, Next, Scheduler
from mreg.registry.download.state import Part, TransferState
from tests.pulling import FAST_TUNING
from tests.scheduler_sim import Link, simulate

KiB, MB = 1024, 1_000_000
MIN_SPLIT = 256 * KiB


def plan(size: int, part_size: int) -> list[Part]:
    return TransferState.plan(size, "k", part_size).parts


def tiled(parts: list[Part], size: int) -> bool:
    """The parts cover ``[0, size)`` in order, without gaps or overlaps."""
    ends = [p.offset + p.size for p in parts]
    return [p.offset for p in parts] == [0, *ends[:-1]] and ends[-1] == size


def test_the_scheduler_knows_no_sockets_files_or_clock() -> None:
    tree = ast.parse(Path(scheduler_module.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert {name.split(".")[0] for name in imported} <= {"__future__", "bisect", "collections", "dataclasses", "enum", "mreg"}
    assert {name for name in imported if name.startswith("mreg")} == {"mreg.registry.download.state"}


def test_parts_go_out_in_order_and_an_unfinished_one_comes_back_first() -> None:
    parts = plan(10 * MB, 4 * MB)
    scheduler = Scheduler(parts, ["a", "b"], MIN_SPLIT)
    first, second = scheduler.claim("a", 0.0), scheduler.claim("b", 0.0)
    assert first and second and (first.fetch.start, first.fetch.end) == (0, 4 * MB)
    assert (second.fetch.source, second.fetch.start, second.fetch.end) == ("b", 4 * MB, 8 * MB)
    scheduler.wrote(first.fetch, MB)
    scheduler.release(first.fetch)  # cut mid-way: the rest is fetched next, by whichever source asks
    again = scheduler.claim("b", 1.0)
    assert again and (again.fetch.start, again.fetch.end) == (MB, 4 * MB)
    scheduler.wrote(second.fetch, 4 * MB)
    scheduler.release(second.fetch)
    last = scheduler.claim("a", 1.0)
    assert last and (last.fetch.start, last.fetch.end) == (8 * MB, 10 * MB) and scheduler.queued == 0


def test_a_resumed_download_queues_only_what_is_missing() -> None:
    parts = plan(3 * MB, MB)
    parts[0].done, parts[1].done = MB, 10
    scheduler = Scheduler(parts, ["a"], MIN_SPLIT)
    assert scheduler.queued == 2
    claim = scheduler.claim("a", 0.0)
    assert claim and (claim.fetch.start, claim.fetch.remaining) == (MB + 10, MB - 10)


def test_a_connection_waits_while_others_fetch_and_stops_when_all_is_done() -> None:
    scheduler = Scheduler(plan(MB, MB), ["a"], MIN_SPLIT)
    assert scheduler.next("a", 0.0, waited=False) is Next.CLAIM
    claim = scheduler.claim("a", 0.0)
    assert claim and scheduler.next("a", 0.0, waited=False) is Next.WAIT
    assert scheduler.next("a", 5.0, waited=True) is Next.WAIT  # one source never splits its own parts
    assert scheduler.claim("a", 5.0) is None
    scheduler.wrote(claim.fetch, MB)
    scheduler.release(claim.fetch)
    assert scheduler.finished and scheduler.next("a", 5.0, waited=False) is Next.STOP


def test_the_bytes_a_reader_waits_for_are_fetched_next() -> None:
    parts = plan(12 * MB, 4 * MB)
    scheduler = Scheduler(parts, ["a"], MIN_SPLIT)
    first = scheduler.claim("a", 0.0)
    assert first and scheduler.prefer(10 * MB)  # a reader waits in the queued third part: cut there, sent first
    tail = scheduler.claim("a", 0.0)
    assert tail and (tail.fetch.start, tail.fetch.end) == (10 * MB, 12 * MB) and tiled(parts, 12 * MB)
    assert scheduler.prefer(8 * MB + KiB)  # near the start of a queued part: the whole part goes first
    head = scheduler.claim("a", 0.0)
    assert head and (head.fetch.start, head.fetch.end) == (8 * MB, 10 * MB)
    assert scheduler.prefer(3 * MB)  # inside a part being fetched: its connection stops at the cut
    assert first.fetch.end == 3 * MB and scheduler.claim("a", 0.0).fetch.start == 3 * MB  # type: ignore[union-attr]
    scheduler.wrote(first.fetch, 3 * MB)
    assert first.fetch.remaining == 0 and tiled(parts, 12 * MB)
    assert not scheduler.prefer(MB)  # written already
    assert not scheduler.prefer(3 * MB + KiB)  # too near where its fetch is: it gets there soon enough
    assert [(p.offset, p.size) for p in parts] == [(0, 3 * MB), (3 * MB, MB), (4 * MB, 4 * MB), (8 * MB, 2 * MB),
                                                   (10 * MB, 2 * MB)]
    assert scheduler.claim("a", 0.0).fetch.start == 4 * MB  # type: ignore[union-attr]


def test_a_file_of_one_part_is_never_cut_for_a_reader() -> None:
    parts = plan(4 * MB, 4 * MB)
    scheduler = Scheduler(parts, ["a"], MIN_SPLIT)
    assert not scheduler.prefer(3 * MB)  # its server may ignore Range: only a tail may be asked for
    claim = scheduler.claim("a", 0.0)
    assert claim and (claim.fetch.start, claim.fetch.end) == (0, 4 * MB) and not scheduler.prefer(3 * MB)


def test_an_idle_source_takes_the_end_that_lets_both_finish_together() -> None:
    parts = plan(8 * MB, 8 * MB)
    scheduler = Scheduler(parts, ["slow", "fast"], MIN_SPLIT)
    scheduler.observe("fast", 3 * MB, 1.0)  # 3 MB/s a connection
    slow = scheduler.claim("slow", 0.0)
    assert slow
    scheduler.wrote(slow.fetch, 2 * MB)  # 1 MB/s over its first two seconds
    assert scheduler.next("fast", 2.0, waited=False) is Next.WAIT  # only after a wait does it cut
    assert scheduler.next("fast", 2.0, waited=True) is Next.CLAIM
    tail = scheduler.claim("fast", 2.0)
    assert tail and tail.stop is None
    # 6 MB left: 1 : 3, so the fast source takes 4.5 MB and both end 1.5 s later.
    assert (tail.fetch.start, tail.fetch.end) == (3_500_000, 8 * MB) and slow.fetch.end == 3_500_000
    assert [(p.offset, p.size) for p in parts] == [(0, 3_500_000), (3_500_000, 4_500_000)]


def test_early_on_a_fetch_is_judged_by_its_sources_average() -> None:
    scheduler = Scheduler(plan(4 * MB, 4 * MB), ["a", "b"], MIN_SPLIT)
    scheduler.observe("a", 3 * MB, 1.0)
    scheduler.observe("b", MB, 1.0)
    mine = scheduler.claim("a", 0.0)
    assert mine and scheduler.speed(mine.fetch, LIVE_RATE_AFTER / 2) == 3 * MB
    tail = scheduler.claim("b", LIVE_RATE_AFTER / 2)
    assert tail and tail.fetch.remaining == MB  # a quarter: b is a third as fast


def test_unknown_rates_split_in_half() -> None:
    scheduler = Scheduler(plan(4 * MB, 4 * MB), ["a", "b"], MIN_SPLIT)
    first = scheduler.claim("a", 0.0)
    tail = scheduler.claim("b", 0.1)
    assert first and tail and first.fetch.remaining == tail.fetch.remaining == 2 * MB


def test_the_fetch_that_would_end_last_is_split() -> None:
    parts = plan(4 * MB, 2 * MB)
    scheduler = Scheduler(parts, ["a", "b", "c"], MIN_SPLIT)
    near, far = scheduler.claim("a", 0.0), scheduler.claim("b", 0.0)
    assert near and far
    scheduler.wrote(near.fetch, 1_500_000)  # 0.5 MB left at 1.5 MB/s
    scheduler.wrote(far.fetch, 500_000)  # 1.5 MB left at 0.5 MB/s: ends last
    tail = scheduler.claim("c", 1.0)
    assert tail and tail.fetch.end == 4 * MB and far.fetch.end == tail.fetch.start and near.fetch.end == 2 * MB
    assert tiled(parts, 4 * MB)


def test_a_share_smaller_than_min_split_is_not_worth_a_request() -> None:
    scheduler = Scheduler(plan(MB, MB), ["a", "b"], MIN_SPLIT)
    busy = scheduler.claim("a", 0.0)
    assert busy
    scheduler.wrote(busy.fetch, MB - 2 * MIN_SPLIT + 2)  # half of what is left is one byte short
    assert scheduler.next("b", 2.0, waited=True) is Next.WAIT and scheduler.claim("b", 2.0) is None


def test_a_stalled_fetch_loses_all_it_has_left_and_is_told_to_stop() -> None:
    parts = plan(MB, MB)
    parts[0].done = MB - 1000  # resumed: 1000 bytes to go, far below min_split
    scheduler = Scheduler(parts, ["stalled", "healthy"], MIN_SPLIT)
    stalled = scheduler.claim("stalled", 0.0)
    assert stalled and scheduler.claim("healthy", LIVE_RATE_AFTER / 2) is None  # it may just be slow
    takeover = scheduler.claim("healthy", LIVE_RATE_AFTER)  # not a byte in a second: speed 0
    assert takeover and takeover.stop is stalled.fetch and stalled.fetch.remaining == 0
    assert (takeover.fetch.start, takeover.fetch.end) == (MB - 1000, MB)
    scheduler.release(stalled.fetch)
    assert scheduler.queued == 0 and tiled(parts, MB)


def test_a_failed_source_gets_nothing_and_its_parts_go_to_the_others() -> None:
    scheduler = Scheduler(plan(2 * MB, MB), ["a", "b"], MIN_SPLIT)
    doomed = scheduler.claim("b", 0.0)
    assert doomed
    scheduler.wrote(doomed.fetch, 1000)
    scheduler.fail("b")
    assert scheduler.claim("b", 0.0) is None and scheduler.next("b", 0.0, waited=False) is Next.STOP
    scheduler.release(doomed.fetch)
    resumed = scheduler.claim("a", 0.0)
    assert resumed and (resumed.fetch.start, resumed.fetch.end) == (1000, MB)


def test_every_source_failing_leaves_the_parts_unfinished() -> None:
    scheduler = Scheduler(plan(MB, MB), ["a"], MIN_SPLIT)
    claim = scheduler.claim("a", 0.0)
    assert claim
    scheduler.fail("a")
    scheduler.release(claim.fetch)
    assert scheduler.next("a", 0.0, waited=False) is Next.STOP and scheduler.queued == 1


# -- whole downloads on a virtual clock (two sources, 16 MB, the parts FAST_TUNING plans) ---------

SIZE = 16 * MB


def two_source_parts() -> list[Part]:
    return plan(SIZE, FAST_TUNING.part_size(SIZE, 2))


def test_both_sources_serve_in_proportion_to_their_speed() -> None:
    parts = two_source_parts()
    outcome = simulate(Scheduler(parts, ["fast", "slow"], MIN_SPLIT), [Link("fast", 8 * MB), Link("slow", 4 * MB)])
    assert all(p.complete for p in parts) and tiled(parts, SIZE)
    assert sum(outcome.sent.values()) == SIZE  # every byte once
    assert 0.6 <= outcome.sent["fast"] / SIZE <= 0.8  # 2:1 links: 0.67, to the nearest part
    assert outcome.seconds <= SIZE / (12 * MB) * 1.2  # both links busy to near the end


def test_a_fast_source_takes_over_the_tail_of_a_slow_one() -> None:
    links = [Link("slow", 1 * MB), Link("fast", 16 * MB)]
    part_size = FAST_TUNING.part_size(SIZE, 2)
    parts = two_source_parts()
    outcome = simulate(Scheduler(parts, ["slow", "fast"], MIN_SPLIT), links)
    assert all(p.complete for p in parts) and tiled(parts, SIZE) and sum(outcome.sent.values()) == SIZE
    tails = [c.fetch for c in outcome.claims if c.fetch.part.offset % part_size]
    assert tails and all(f.source == "fast" for f in tails)
    # At 1:16 the slow source's fair share is 6 % (0.94 s); a take-over must be worth min_split.
    assert outcome.sent["slow"] < SIZE * 0.10 and outcome.seconds < 1.6
    # Without taking over, the slow source's 8 connections would hold 8 whole parts: 26 % of the
    # file, at 1 MB/s.
    held = simulate(Scheduler(two_source_parts(), ["slow", "fast"], SIZE), links)
    assert held.sent["slow"] > SIZE * 0.25 and held.seconds > 4.0


def test_a_stalled_source_does_not_hold_the_file() -> None:
    parts = two_source_parts()
    outcome = simulate(Scheduler(parts, ["healthy", "stalled"], MIN_SPLIT),
                       [Link("healthy", 8 * MB), Link("stalled", 0)])
    assert all(p.complete for p in parts) and outcome.sent == {"healthy": SIZE, "stalled": 0}
    stalled = [c.fetch for c in outcome.claims if c.fetch.source == "stalled"]
    stopped = {id(c.stop) for c in outcome.claims if c.stop is not None}
    assert stalled and all(id(f) in stopped for f in stalled if f.part.size)  # every one taken over and stopped
    assert outcome.seconds <= SIZE / (8 * MB) + 2 * LIVE_RATE_AFTER


def test_a_source_dying_midway_leaves_the_file_to_the_other() -> None:
    parts = two_source_parts()
    outcome = simulate(Scheduler(parts, ["survivor", "doomed"], MIN_SPLIT),
                       [Link("survivor", 4 * MB), Link("doomed", 4 * MB, dies_after=2 * MB)])
    assert all(p.complete for p in parts) and tiled(parts, SIZE)
    assert outcome.sent == {"survivor": SIZE - 2 * MB, "doomed": 2 * MB}  # nothing it wrote is fetched again
