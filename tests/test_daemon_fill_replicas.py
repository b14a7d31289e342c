"""One upstream transfer per blob across replicas (#13): three `mreg serve` processes sharing one PostgreSQL catalog
and one SeaweedFS bucket, cold `hf_hub_download` clients spread over them, the test hub throttled so a fill takes
seconds. Every client gets its first byte within huggingface_hub's 10 s and the right bytes, while upstream sends
the file about once (the test hub counts every body byte per blob), a slow client on a follower and a range started
late get the right bytes too, and no replica's home ever takes more than ``test_daemon_s3.LOCAL_BOUND`` of disk (the
bytes in the bucket are freed from the partial files). The leader killed with -9 part-way: the other replicas take
its fill over at its committed offset, their clients finish within the same bound, and the bucket never shows an
incomplete blob. The default suite uses a 96 MiB file; the 240 MB one is marked slow. A mirror job and a client
missing the same blob meet at its lease, whichever comes first: upstream sends it once. And a leader whose lease
another replica took over (on SQLite and PostgreSQL) stops: its client is cut off, its later writes change nothing,
and no blob appears until a leader finishes; a mirror job's pull follows the new leader instead, and takes the fill
over when that one gives it up."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import hf_hub_download
from sqlalchemy import update
from tqdm.std import tqdm

from mreg.registry.catalog import Catalog
from mreg.registry.catalog.db import make_engine, writer
from mreg.registry.catalog.models import FillLease, utcnow
from mreg.registry.catalog.records import FillRecord
from tests.daemons import Daemon, DaemonProcess, connection, raw, start_daemon, wait_for
from tests.postgres import rows_of
from tests.seaweed import SeaweedServer
from tests.test_daemon_s3 import BlobWatch, DiskWatch, blob_files, bounded, objects
from tests.test_mirror import call, jobs
from tests.test_mirror_replicas import start_all
from tests.testhub import TestHub, generated_file, small_repo

pytestmark = pytest.mark.timeout(300)
MiB = 2**20
REPO = "testorg/shared-fill"
FIRST_BYTE = 10.0
"""Seconds huggingface_hub waits for bytes before it gives up."""



def sha256_of(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def counter(daemon: Daemon, name: str) -> float:
    return next((v for k, v in daemon.metrics().items() if k.split("{")[0] == name), 0.0)


class Client(threading.Thread):
    """One cold `hf_hub_download` of the file through ``replica``: when its first byte came, what it got."""

    def __init__(self, replica: DaemonProcess, cache: Path, repo: str = REPO) -> None:
        super().__init__(daemon=True)
        self.replica, self.cache, self.repo = replica, cache, repo
        self.first_byte: float | None = None
        self.path: Path | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        started, client = time.monotonic(), self

        class FirstByte(tqdm):  # type: ignore[misc]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **{**kwargs, "disable": True})

            def update(self, n: float | None = 1) -> bool | None:
                if n and client.first_byte is None:
                    client.first_byte = time.monotonic() - started
                return super().update(n)

        try:
            self.path = Path(hf_hub_download(self.repo, "weights.bin", cache_dir=self.cache, endpoint=self.replica.url,
                                             token=False, tqdm_class=FirstByte))
        except BaseException as exc:  # noqa: BLE001 (handed to the test)
            self.error = exc


class SlowFetch(threading.Thread):
    """A plain GET of the file (from byte ``start``) through ``daemon`` that reads its body at most ``rate`` bytes a
    second, as a slow client does: the bytes it got, and its status."""

    def __init__(self, daemon: Daemon, rate: float, start: int = 0) -> None:
        super().__init__(daemon=True)
        self.daemon_url, self.rate, self.start_at = daemon.url, rate, start
        self.status, self.body, self.error = 0, bytearray(), None

    def run(self) -> None:
        conn = connection(self.daemon_url)
        try:
            headers = {"Range": f"bytes={self.start_at}-"} if self.start_at else {}
            conn.request("GET", f"/{REPO}/resolve/main/weights.bin", headers=headers)
            response = conn.getresponse()
            self.status, began = response.status, time.monotonic()
            while data := response.read(256 * 1024):
                self.body += data
                time.sleep(max(0.0, began + len(self.body) / self.rate - time.monotonic()))  # the client's pace
        except (OSError, http.client.HTTPException) as exc:
            self.error = exc
        finally:
            conn.close()


def shared_setup(test_hub: TestHub, tmp_path: Path, size: int) -> str:
    data = generated_file(tmp_path / "data" / "weights.bin", size, seed=13)
    repo = test_hub.add_repo(small_repo(REPO, {"weights.bin": data, "config.json": '{"model_type": "x"}'}))
    sha = repo.head.files["weights.bin"].blob.sha256
    assert sha is not None
    return sha


def replicas(test_hub: TestHub, tmp_path: Path, s3_url: str, pg_url: str) -> list[DaemonProcess]:
    return start_all([tmp_path / name / "home" for name in "abc"], test_hub.endpoint, "--store", s3_url,
                     "--database-url", pg_url)


def stop_all(daemons: list[DaemonProcess]) -> None:
    for daemon in daemons:
        if daemon.running:
            daemon.process.send_signal(signal.SIGTERM)
    for daemon in daemons:
        daemon.process.wait(timeout=30)


def finished(clients: list[Client], deadline: float) -> None:
    for client in clients:
        client.join(deadline)
        assert not client.is_alive(), "a client never finished"


def committed_of(pg_url: str, sha: str) -> int:
    rows = rows_of(pg_url, f"SELECT committed FROM fill_leases WHERE key = '{sha}'")
    return int(rows[0][0]) if rows else 0


def check_fill(size: int, test_hub: TestHub, tmp_path: Path, s3_url: str, pg_url: str, seaweed: SeaweedServer,
               throttle: int) -> None:
    sha = shared_setup(test_hub, tmp_path, size)
    data = (tmp_path / "data" / "weights.bin").read_bytes()
    test_hub.faults.throttle = throttle  # per connection: the fill takes seconds
    daemons = replicas(test_hub, tmp_path, s3_url, pg_url)
    prefix = s3_url.split("/", 3)[3]
    try:
        test_hub.stats.reset()
        clients = [Client(daemons[i % 3], tmp_path / f"hf-{i}") for i in range(6)]
        with DiskWatch([d.home for d in daemons]) as disk:
            for client in clients:
                client.start()
            wait_for(lambda: sum(counter(d, "mreg_fills_led_total") for d in daemons) == 1, 30, "a leader")
            slow_at, late_at = [d for d in daemons if counter(d, "mreg_fills_led_total") == 0]
            slow = SlowFetch(slow_at, rate=size / 12)  # it ends seconds after the fill, far behind it
            slow.start()
            wait_for(lambda: committed_of(pg_url, sha) >= size // 2, 60, "half the fill committed")
            late = SlowFetch(late_at, rate=size, start=1000)  # a range far behind what the follower copied
            late.start()
            finished(clients, 240)
            for fetch in (slow, late):
                fetch.join(120)
                assert not fetch.is_alive(), "a plain client never finished"
        bounded(disk, files=1)
        assert (slow.error, slow.status, bytes(slow.body) == data) == (None, 200, True), (slow.error, len(slow.body))
        assert (late.error, late.status, bytes(late.body) == data[1000:]) == (None, 206, True), late.error
        for client in clients:
            assert client.error is None, client.error
            assert client.path is not None and sha256_of(client.path) == sha
            assert client.first_byte is not None and client.first_byte < FIRST_BYTE, client.first_byte
        sent = test_hub.stats.bytes_by_sha256[sha]
        assert sent <= 1.05 * size, sent / size
        led, followed, taken = ([counter(d, name) for d in daemons] for name in (
            "mreg_fills_led_total", "mreg_fills_followed_total", "mreg_fills_taken_over_total"))
        assert (sum(led), sum(followed), sum(taken)) == (1, 2, 0), (led, followed, taken)
        assert objects(seaweed, prefix) == {f"blobs/{sha}": size}  # the fill's chunks are gone
        for daemon in daemons:
            assert blob_files(daemon.home) == [], daemon.home
        print(f"size {size}: upstream {sent / size:.3f}x, first bytes "
              f"{sorted(round(c.first_byte or 0, 2) for c in clients)} s")
    finally:
        test_hub.faults.throttle = None
        stop_all(daemons)


def test_six_clients_on_three_replicas_get_one_upstream_transfer(test_hub: TestHub, tmp_path: Path, s3_url: str,
                                                                 pg_url: str, seaweed: SeaweedServer) -> None:
    check_fill(96 * MiB, test_hub, tmp_path, s3_url, pg_url, seaweed, throttle=2_000_000)


@pytest.mark.slow
def test_six_clients_on_three_replicas_get_one_upstream_transfer_of_240_mb(
        test_hub: TestHub, tmp_path: Path, s3_url: str, pg_url: str, seaweed: SeaweedServer) -> None:
    check_fill(240_000_000, test_hub, tmp_path, s3_url, pg_url, seaweed, throttle=3_000_000)


def check_takeover(size: int, test_hub: TestHub, tmp_path: Path, s3_url: str, pg_url: str, seaweed: SeaweedServer,
                   throttle: int) -> None:
    sha = shared_setup(test_hub, tmp_path, size)
    test_hub.faults.throttle = throttle
    a, b, c = daemons = replicas(test_hub, tmp_path, s3_url, pg_url)
    watch = BlobWatch(seaweed, s3_url.split("/", 3)[3])
    watch.start()
    disk = DiskWatch([b.home, c.home])  # the survivors
    disk.start()
    try:
        test_hub.stats.reset()
        first = Client(a, tmp_path / "hf-a")  # A leads: its client misses first
        first.start()
        wait_for(lambda: counter(a, "mreg_fills_led_total") == 1, 30, "A to lead the fill")
        clients = [Client(d, tmp_path / f"hf-{i}") for i, d in enumerate((b, c, b, c))]
        for client in clients:
            client.start()

        wait_for(lambda: committed_of(pg_url, sha) >= 0.3 * size, 60, "30 % of the fill committed")
        a.process.send_signal(signal.SIGKILL)
        a.process.wait(timeout=10)
        at_kill = committed_of(pg_url, sha)
        finished(clients, 240)
        disk.__exit__()
        bounded(disk, files=1)
        for client in clients:
            assert client.error is None, client.error
            assert client.path is not None and sha256_of(client.path) == sha
        sent = test_hub.stats.bytes_by_sha256[sha]
        assert sent <= 1.3 * size, sent / size
        taken = [counter(d, "mreg_fills_taken_over_total") for d in (b, c)]
        assert sum(taken) == 1, taken
        assert sum(counter(d, "mreg_fills_followed_total") for d in (b, c)) == 2
        assert sum(counter(d, "mreg_fills_led_total") for d in (b, c)) == 1
        watch.stop.set()
        watch.join(10)
        assert watch.seen == {(f"blobs/{sha}", size)}  # never an incomplete blob
        print(f"size {size}: killed at {at_kill / size:.0%} committed, upstream {sent / size:.3f}x")
    finally:
        watch.stop.set()
        disk.stop.set()
        test_hub.faults.throttle = None
        stop_all(daemons)


def test_the_leader_killed_mid_fill_is_taken_over_at_its_committed_offset(
        test_hub: TestHub, tmp_path: Path, s3_url: str, pg_url: str, seaweed: SeaweedServer) -> None:
    check_takeover(96 * MiB, test_hub, tmp_path, s3_url, pg_url, seaweed, throttle=2_000_000)


@pytest.mark.slow
def test_the_leader_killed_mid_fill_of_240_mb_is_taken_over(
        test_hub: TestHub, tmp_path: Path, s3_url: str, pg_url: str, seaweed: SeaweedServer) -> None:
    check_takeover(240_000_000, test_hub, tmp_path, s3_url, pg_url, seaweed, throttle=3_000_000)


def test_a_mirror_job_and_a_client_missing_one_blob_meet_at_its_lease(
        test_hub: TestHub, tmp_path: Path, s3_url: str, pg_url: str) -> None:
    size, shas = 24 * MiB, {}
    job_first, client_first = "testorg/job-first", "testorg/client-first"
    for i, name in enumerate((job_first, client_first)):
        data = generated_file(tmp_path / "data" / f"{i}.bin", size, seed=20 + i)
        repo = test_hub.add_repo(small_repo(name, {"weights.bin": data, "config.json": '{"model_type": "x"}'}))
        shas[name] = repo.head.files["weights.bin"].blob.sha256
    test_hub.faults.throttle = 500_000  # 4 MB/s over a leader's 8 connections: a fill takes ~6 s
    daemons = start_all([tmp_path / name / "home" for name in "ab"], test_hub.endpoint, "--store", s3_url,
                        "--database-url", pg_url)

    def leader(fills: int) -> DaemonProcess:
        """The replica leading the ``fills``-th fill (they start one after the other here)."""
        wait_for(lambda: sum(counter(d, "mreg_fills_led_total") for d in daemons) == fills, 30, f"fill {fills} led")
        return max(daemons, key=lambda d: counter(d, "mreg_fills_led_total"))

    try:
        test_hub.stats.reset()
        assert call(daemons[0], "POST", "/v1/jobs", {"repo": job_first})[0] == 201
        by_job = leader(1)  # the job's replica (any may take it) leads; a client of the other follows
        clients = [Client(next(d for d in daemons if d is not by_job), tmp_path / "hf-0", job_first),
                   Client(daemons[0], tmp_path / "hf-1", client_first)]
        clients[0].start()
        clients[1].start()
        leader(2)  # the second client leads; the job of its repo follows
        assert call(daemons[1], "POST", "/v1/jobs", {"repo": client_first})[0] == 201
        finished(clients, 120)
        for client, name in zip(clients, (job_first, client_first)):
            assert client.error is None, client.error
            assert client.path is not None and sha256_of(client.path) == shas[name]
        wait_for(lambda: {j["status"] for j in jobs(daemons[1]).values()} == {"done"}, 60, "both jobs done")
        for name, sha in shas.items():
            assert test_hub.stats.bytes_by_sha256[sha] <= 1.05 * size, (name, test_hub.stats.bytes_by_sha256[sha])
        counts = {name: sum(counter(d, f"mreg_fills_{name}_total") for d in daemons)
                  for name in ("led", "followed", "taken_over")}
        assert counts == {"led": 2, "followed": 2, "taken_over": 0}, counts
    finally:
        test_hub.faults.throttle = None
        stop_all(daemons)


class Fetch(threading.Thread):
    """One plain GET of the file through ``daemon``: the bytes it got, and whether the body came whole."""

    def __init__(self, daemon: Daemon) -> None:
        super().__init__(daemon=True)
        self.url, self.body, self.whole = daemon.url, b"", False

    def run(self) -> None:
        try:
            self.body, self.whole = raw("GET", f"{self.url}/{REPO}/resolve/main/weights.bin")[2], True
        except http.client.IncompleteRead as exc:
            self.body = exc.partial
        except OSError:
            pass


async def intrude(url: str, sha: str, size: int) -> FillRecord:
    """Take the fill lease of ``sha`` as another replica would once its holder's lease had run out (made to end
    now, again until the take-over wins: the holder renews it meanwhile)."""
    engine, catalog = make_engine(url), await Catalog.open(url)
    try:
        end = time.monotonic() + 30
        while True:
            async with writer(engine).begin() as conn:
                await conn.execute(update(FillLease).values(lease_until=utcnow()))
            if (lease := await catalog.claim_fill(sha, REPO, "intruder", size, 60)).leader:
                return lease
            assert time.monotonic() < end, "the take-over never won"
    finally:
        await catalog.close()
        await engine.dispose()


async def give_back(url: str, sha: str, fence: int) -> bool:
    catalog = await Catalog.open(url)
    try:
        return await catalog.give_back_fill(sha, fence)
    finally:
        await catalog.close()


def test_a_leader_whose_lease_was_taken_over_stops_and_writes_nothing_more(
        test_hub: TestHub, tmp_path: Path, s3_url: str, catalog_url: str, seaweed: SeaweedServer) -> None:
    size = 24 * MiB
    sha = shared_setup(test_hub, tmp_path, size)
    data = (tmp_path / "data" / "weights.bin").read_bytes()
    test_hub.faults.throttle = 500_000  # 4 MB/s over the leader's 8 connections: the fill takes ~6 s
    daemon = start_daemon(tmp_path / "home", test_hub.endpoint, "--store", s3_url, "--database-url", catalog_url)
    prefix = s3_url.split("/", 3)[3]
    try:
        cut = Fetch(daemon)
        cut.start()

        def lease() -> tuple[Any, ...] | None:
            rows = rows_of(catalog_url, f"SELECT holder, fence, committed, state FROM fill_leases WHERE key = '{sha}'")
            return tuple(rows[0]) if rows else None

        wait_for(lambda: (lease() or ("", 0, 0))[2] > 0, 60, "the daemon's first commit")
        taken = asyncio.run(intrude(catalog_url, sha, size))
        assert taken.fence == 2 and 0 < taken.committed < size
        wait_for(lambda: counter(daemon, "mreg_fill_leases_lost_total") == 1, 30, "the daemon to notice")
        cut.join(60)
        assert not cut.whole and cut.body == data[:len(cut.body)] and len(cut.body) < size  # cut off, never whole
        assert lease() == ("intruder", 2, taken.committed, "filling")  # its later heartbeats changed nothing
        assert not any(key.startswith("blobs/") for key in objects(seaweed, prefix))

        test_hub.faults.throttle = None
        assert asyncio.run(give_back(catalog_url, sha, taken.fence))
        assert raw("GET", f"{daemon.url}/{REPO}/resolve/main/weights.bin")[2] == data  # led again, fence 3
        holder, fence, committed, state = lease() or ("", 0, 0, "")
        assert (fence, committed, state) == (3, size, "done") and holder != "intruder"
        assert objects(seaweed, prefix) == {f"blobs/{sha}": size}
    finally:
        test_hub.faults.throttle = None
        assert daemon.stop() == 0, daemon.log.read_text()


def test_a_mirror_job_whose_fill_lease_was_taken_over_follows_the_new_leader(
        test_hub: TestHub, tmp_path: Path, s3_url: str, pg_url: str, seaweed: SeaweedServer) -> None:
    size = 24 * MiB
    sha = shared_setup(test_hub, tmp_path, size)
    test_hub.faults.throttle = 500_000  # 4 MB/s over the leader's 8 connections: the fill takes ~6 s
    daemon = start_daemon(tmp_path / "home", test_hub.endpoint, "--store", s3_url, "--database-url", pg_url)
    prefix = s3_url.split("/", 3)[3]
    try:
        assert call(daemon, "POST", "/v1/jobs", {"repo": REPO})[0] == 201
        wait_for(lambda: int((rows_of(pg_url, f"SELECT committed FROM fill_leases WHERE key = '{sha}'")
                              or [(0,)])[0][0]) > 0, 60, "the job's first commit")
        taken = asyncio.run(intrude(pg_url, sha, size))
        wait_for(lambda: counter(daemon, "mreg_fill_leases_lost_total") == 1, 30, "the daemon to notice")
        assert f"blobs/{sha}" not in objects(seaweed, prefix)
        assert jobs(daemon)[REPO]["status"] == "running"  # its pull follows the intruder's fill

        test_hub.faults.throttle = None
        assert asyncio.run(give_back(pg_url, sha, taken.fence))  # the job takes the fill over and finishes it
        wait_for(lambda: jobs(daemon)[REPO]["status"] in ("done", "failed"), 60, "the job to end")
        assert jobs(daemon)[REPO]["status"] == "done", jobs(daemon)[REPO]
        assert rows_of(pg_url, f"SELECT fence, committed, state FROM fill_leases WHERE key = '{sha}'") == [
            (3, size, "done")]
        assert objects(seaweed, prefix)[f"blobs/{sha}"] == size
        assert (counter(daemon, "mreg_fills_led_total"), counter(daemon, "mreg_fills_taken_over_total")) == (2, 1)
    finally:
        test_hub.faults.throttle = None
        assert daemon.stop() == 0, daemon.log.read_text()


def test_a_fill_that_fails_verification_cuts_every_replicas_clients_off(
        test_hub: TestHub, tmp_path: Path, s3_url: str, pg_url: str, seaweed: SeaweedServer) -> None:
    size = 24 * MiB
    sha = shared_setup(test_hub, tmp_path, size)
    data = (tmp_path / "data" / "weights.bin").read_bytes()
    test_hub.faults.throttle = 500_000
    test_hub.faults.corrupt(sha, count=1)  # one part of the leader's download comes back with flipped bytes
    a, b = (start_daemon(tmp_path / name / "home", test_hub.endpoint, "--store", s3_url, "--database-url", pg_url)
            for name in "ab")
    prefix = s3_url.split("/", 3)[3]
    try:
        first = Fetch(a)
        first.start()
        wait_for(lambda: counter(a, "mreg_fills_led_total") == 1, 30, "A to lead the fill")
        second = Fetch(b)
        second.start()
        for fetch in (first, second):
            fetch.join(60)
            assert not fetch.is_alive() and not fetch.whole and len(fetch.body) < size  # never a whole body
        assert counter(b, "mreg_fills_followed_total") == 1
        assert rows_of(pg_url, f"SELECT key FROM failed_transfers WHERE key = '{sha}'") == [(sha,)]
        assert objects(seaweed, prefix) == {}  # no blob, and the bad bytes' chunks are gone

        test_hub.faults.throttle = None
        status, _, body = b.get(f"/{REPO}/resolve/main/weights.bin")  # B leads the next fill
        assert (status, body == data) == (200, True)
        assert counter(b, "mreg_fills_led_total") == 1
    finally:
        test_hub.faults.reset()
        for daemon in (a, b):
            assert daemon.stop() == 0, daemon.log.read_text()
