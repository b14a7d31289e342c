"""`mreg serve --store s3://…`: the daemon over a real S3 server (SeaweedFS, tests/seaweed.py). A cold miss is
fetched once, verified, published to the bucket and recorded in the catalog; warm reads (whole files and
ranges) stream from the bucket with the Hub's headers; headers are indexed from the bucket; no replica keeps
a blob file in its MREG_HOME; and a file one replica filled is served by another sharing the catalog
(PostgreSQL) and the bucket without a byte from upstream."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import random
import signal
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from huggingface_hub import hf_hub_download

from mreg.cli.main import main
from tests.daemons import ROOT, Daemon, daemon_env, start_daemon, wait_for
from tests.seaweed import BUCKET, SeaweedServer
from tests.test_mirror import call, wait_job
from tests.testhub import TestHub, small_repo

pytestmark = pytest.mark.timeout(120)
REPO = "testorg/s3-model"
WEIGHTS = bytes(range(251)) * 12_000  # 3 MB, a period no chunk size divides
TENSOR = struct.pack("<65536f", *range(65536))
HEADER = json.dumps({"w": {"dtype": "F32", "shape": [256, 256], "data_offsets": [0, len(TENSOR)]}}).encode()
SAFETENSORS = struct.pack("<Q", len(HEADER)) + HEADER + TENSOR
FILES = {"README.md": "# s3\n", "config.json": '{"model_type": "llama", "hidden_size": 8}\n',
         "weights.bin": WEIGHTS, "model.safetensors": SAFETENSORS}
INDEX_DEADLINE = 30.0


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def blob_files(home: Path) -> list[Path]:
    """Every file below ``home`` holding a blob's bytes or pointing at one: blobs, partial downloads, snapshot
    links (the kept Hub answers, the catalog, locks and logs are not blobs)."""
    return [p for p in home.rglob("*") if p.is_symlink() or (p.is_file() and (
        p.relative_to(home).parts[0] in ("blobs", "partial", "quarantine") or "snapshots" in p.parts))]


def objects(seaweed: SeaweedServer, prefix: str) -> dict[str, int]:
    """key → size of the objects below ``prefix`` in the session's bucket."""
    answer = seaweed.client().list_objects_v2(Bucket=BUCKET, Prefix=prefix + "/")
    return {o["Key"][len(prefix) + 1:]: o["Size"] for o in answer.get("Contents", [])}


class BlobWatch(threading.Thread):
    """Lists the bucket's blobs until stopped, keeping every (key, size) it saw: none may be incomplete."""

    def __init__(self, seaweed: SeaweedServer, prefix: str) -> None:
        super().__init__(daemon=True)
        self.seaweed, self.prefix = seaweed, prefix
        self.seen: set[tuple[str, int]] = set()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.seen |= {(k, v) for k, v in objects(self.seaweed, self.prefix).items() if k.startswith("blobs/")}
            self.stop.wait(0.1)


LOCAL_BOUND = 48 * 2**20
"""The most disk a replica's home may take per file it fills from the shared store (#13): a window of the partial
file, whatever its size (a leader's: 8 MiB kept behind its commits, 16 MiB of backlog, 8 MiB of parts in flight)."""


def bounded(watch: DiskWatch, files: int) -> None:
    """Every home's disk use stayed within ``LOCAL_BOUND`` for each of the ``files`` it may fill at once."""
    peaks = {home.parent.name: round(peak / 2**20, 1) for home, peak in watch.peaks.items()}
    print(f"peak MiB on disk per replica: {peaks}")
    assert all(peak <= files * LOCAL_BOUND for peak in watch.peaks.values()), peaks


class DiskWatch(threading.Thread):
    """Samples the disk space every file below each of ``homes`` takes (``st_blocks``: a punched range takes none)
    every 50 ms until stopped, keeping each home's peak."""

    def __init__(self, homes: list[Path]) -> None:
        super().__init__(daemon=True)
        self.peaks = dict.fromkeys(homes, 0)
        self.stop = threading.Event()

    @staticmethod
    def allocated(home: Path) -> int:
        total = 0
        for path in home.rglob("*"):
            try:
                total += path.lstat().st_blocks * 512
            except FileNotFoundError:  # removed meanwhile
                pass
        return total

    def run(self) -> None:
        while not self.stop.is_set():
            for home in self.peaks:
                self.peaks[home] = max(self.peaks[home], self.allocated(home))
            self.stop.wait(0.05)

    def __enter__(self) -> DiskWatch:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.join(10)


def hub_with_repo(test_hub: TestHub) -> TestHub:
    test_hub.add_repo(small_repo(REPO, FILES))
    return test_hub


@pytest.fixture
def s3_daemon(test_hub: TestHub, tmp_path: Path, s3_url: str) -> Iterator[Daemon]:
    running = start_daemon(tmp_path / "home", hub_with_repo(test_hub).endpoint, "--store", s3_url)
    try:
        yield running
    finally:
        assert running.stop() == 0, running.log.read_text()


def test_a_cold_miss_fills_the_bucket_and_warm_reads_stream_from_it(s3_daemon: Daemon, test_hub: TestHub,
                                                                     seaweed: SeaweedServer, s3_url: str,
                                                                     tmp_path: Path) -> None:
    prefix = s3_url.split("/", 3)[3]
    path = hf_hub_download(REPO, "weights.bin", cache_dir=tmp_path / "hf", endpoint=s3_daemon.url, token=False)
    assert Path(path).read_bytes() == WEIGHTS
    assert objects(seaweed, prefix) == {f"blobs/{sha256(WEIGHTS)}": len(WEIGHTS)}  # fills' chunks gone too
    assert test_hub.stats.cdn_bytes == len(WEIGHTS)
    assert blob_files(s3_daemon.home) == []

    commit = test_hub.repo(REPO).head.sha
    status, headers, body = s3_daemon.get(f"/{REPO}/resolve/main/weights.bin")
    assert (status, body) == (200, WEIGHTS)
    assert headers["X-Repo-Commit"] == commit and headers["X-Linked-Etag"] == f'"{sha256(WEIGHTS)}"'
    assert headers["ETag"] == f'"{sha256(WEIGHTS)}"' and headers["X-Linked-Size"] == str(len(WEIGHTS))
    for rng, want in {"bytes=0-0": WEIGHTS[:1], "bytes=1048570-1048585": WEIGHTS[1048570:1048586],
                      "bytes=-7": WEIGHTS[-7:], "bytes=2000000-": WEIGHTS[2000000:]}.items():
        status, headers, body = s3_daemon.get(f"/{REPO}/resolve/{commit}/weights.bin", {"Range": rng})
        assert (status, body, headers["Content-Length"]) == (206, want, str(len(want))), rng
    assert test_hub.stats.cdn_bytes == len(WEIGHTS)  # the warm reads came from the bucket


def test_headers_are_indexed_from_the_bucket(s3_daemon: Daemon, tmp_path: Path) -> None:
    for name in ("config.json", "model.safetensors"):
        path = hf_hub_download(REPO, name, cache_dir=tmp_path / "hf", endpoint=s3_daemon.url, token=False)
        want = FILES[name]
        assert Path(path).read_bytes() == (want.encode() if isinstance(want, str) else want)
    detail: dict = {}

    def indexed() -> bool:
        detail.update(json.loads(s3_daemon.get(f"/v1/repos/{REPO}")[2]))
        return detail.get("parameters") == 65536

    wait_for(indexed, INDEX_DEADLINE, "the safetensors header in the catalog")
    assert detail["architecture"] == "llama"
    assert blob_files(s3_daemon.home) == []


def test_store_bytes_count_what_the_catalog_holds_not_every_object_in_the_bucket(
        test_hub: TestHub, tmp_path: Path, seaweed: SeaweedServer, s3_url: str) -> None:
    prefix = s3_url.split("/", 3)[3]
    stray = bytes(1000)  # an object no revision holds (say, another tool's): not counted
    seaweed.client().put_object(Bucket=BUCKET, Key=f"{prefix}/blobs/{sha256(stray)}", Body=stray)
    daemon = start_daemon(tmp_path / "home", hub_with_repo(test_hub).endpoint, "--store", s3_url,
                          "--evict-every", "1s")
    try:
        hf_hub_download(REPO, "weights.bin", cache_dir=tmp_path / "hf", endpoint=daemon.url, token=False)
        wait_for(lambda: daemon.metrics()["mreg_store_bytes"] == len(WEIGHTS), 30, "the stored file counted")
    finally:
        assert daemon.stop() == 0, daemon.log.read_text()


def test_what_one_replica_filled_or_mirrored_another_serves_without_upstream_bytes(
        test_hub: TestHub, tmp_path: Path, s3_url: str, pg_url: str) -> None:
    hub_with_repo(test_hub)
    replicas = [start_daemon(tmp_path / name / "home", test_hub.endpoint, "--store", s3_url, "--database-url", pg_url)
                for name in ("a", "b")]
    try:
        a, b = replicas
        got = hf_hub_download(REPO, "weights.bin", cache_dir=tmp_path / "hf-a", endpoint=a.url, token=False)
        assert sha256(Path(got).read_bytes()) == sha256(WEIGHTS)
        for name in ("config.json", "model.safetensors"):  # A indexes the header
            hf_hub_download(REPO, name, cache_dir=tmp_path / "hf-a", endpoint=a.url, token=False)
        test_hub.stats.reset()
        got = hf_hub_download(REPO, "weights.bin", cache_dir=tmp_path / "hf-b", endpoint=b.url, token=False)
        assert sha256(Path(got).read_bytes()) == sha256(WEIGHTS)
        assert (test_hub.stats.cdn_bytes, test_hub.stats.resolve_bytes) == (0, 0)
        assert b.metrics()["mreg_upstream_bytes_total"] == 0
        listed = json.loads(b.get("/v1/repos")[2])
        assert [item["repo"] for item in listed] == [REPO]
        for replica in replicas:  # A indexed the header it filled: every replica's search finds it
            wait_for(lambda: [item["repo"] for item in json.loads(replica.get("/v1/search?format=safetensors")[2])]
                     == [REPO], INDEX_DEADLINE, f"{REPO} in {replica.url}'s /v1/search")

        mirrored = random.Random(7).randbytes(2 * 2**20)  # a mirror job through B, served by A from the bucket
        test_hub.add_repo(small_repo("testorg/s3-mirrored", {"data.bin": mirrored, "README.md": "# m\n"}))
        assert call(b, "POST", "/v1/jobs", {"repo": "testorg/s3-mirrored"})[0] in (200, 201, 202)
        wait_job(a, "testorg/s3-mirrored", 60, status="done")
        test_hub.stats.reset()
        got = hf_hub_download("testorg/s3-mirrored", "data.bin", cache_dir=tmp_path / "hf-a", endpoint=a.url,
                              token=False)
        assert sha256(Path(got).read_bytes()) == sha256(mirrored)
        assert (test_hub.stats.cdn_bytes, test_hub.stats.resolve_bytes) == (0, 0)
        for replica in replicas:
            assert blob_files(replica.home) == [], replica.home
    finally:
        for replica in replicas:
            assert replica.stop() == 0, replica.log.read_text()


def test_a_bucket_that_cannot_be_opened_stops_serve_with_one_line(test_hub: TestHub, tmp_path: Path,
                                                                   s3_env: dict[str, str]) -> None:
    cases = {"s3://no-such-bucket-here": ({}, "does not exist"),
             f"s3://{BUCKET}/x": ({"AWS_SECRET_ACCESS_KEY": "wrong"}, "s3://")}
    for url, (extra, says) in cases.items():
        env = daemon_env(tmp_path / "home", test_hub.endpoint, {**s3_env, **extra})
        done = subprocess.run([sys.executable, "-m", "mreg.cli.main", "serve", "--port", "0", "--store", url],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        errors = [line for line in done.stderr.splitlines() if line.startswith("mreg: error:")]
        assert done.returncode == 5, done.stderr
        assert len(errors) == 1 and says in errors[0], done.stderr
        assert "wrong" not in done.stderr


def test_what_needs_a_local_store_is_refused_at_start(tmp_path: Path) -> None:
    env = {"MREG_HOME": str(tmp_path / "home"), "MREG_STORE": "s3://some-bucket/prefix"}
    for args, says in {("--min-free", "1G"): "--min-free has no meaning for the bucket",
                       ("--evict-every", "1m", "--evict-grace", "3m"): "--evict-grace must be at least 4 budget rounds",
                       ("--store", "s3://Bad_Bucket"): "invalid S3 bucket"}.items():
        result = CliRunner().invoke(main, ["serve", "--port", "0", *args], env=env)
        assert result.exit_code == 2, result.output
        assert says in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert not os.path.exists(tmp_path / "home" / "blobs")


def test_conversions_and_modelfiles_are_refused_in_one_line(s3_daemon: Daemon, test_hub: TestHub) -> None:
    status, headers, body = s3_daemon.get(f"/v1/repos/{REPO}/modelfile?quant=q4_1")
    assert (status, headers["X-Error-Code"]) == (501, "NotSupported")
    assert "not supported with the store s3://" in json.loads(body)["error"]
    request = urllib.request.Request(s3_daemon.url + "/v1/convert", method="POST",
                                     data=json.dumps({"repo": REPO, "quant": "q8_0"}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        job = json.loads(response.read())
    final: dict = {}

    def ended() -> bool:
        final.update(json.loads(s3_daemon.get(f"/v1/convert/{job['id']}")[2]))
        return final["status"] != "running"

    wait_for(ended, 30, "the conversion job")
    assert final["status"] == "failed" and "converting to GGUF needs blobs as files" in final["error"], final
    assert test_hub.stats.cdn_bytes == 0  # refused before anything was fetched


def test_clients_stream_a_fill_while_it_goes_to_the_bucket(s3_daemon: Daemon, test_hub: TestHub,
                                                           tmp_path: Path) -> None:
    data = random.Random(13).randbytes(12 * 2**20)
    test_hub.add_repo(small_repo("testorg/s3-big", {"big.bin": data}))
    test_hub.faults.bandwidth = 4_000_000  # ~3 s upstream: the clients overlap the fill
    start = threading.Barrier(4)
    paths: list[str] = []

    def client(i: int) -> None:
        start.wait()
        paths.append(hf_hub_download("testorg/s3-big", "big.bin", cache_dir=tmp_path / f"c{i}",
                                     endpoint=s3_daemon.url, token=False))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [sha256(Path(p).read_bytes()) for p in paths] == [sha256(data)] * 4
    assert test_hub.stats.cdn_bytes <= 1.1 * len(data)
    metrics = s3_daemon.metrics()
    assert metrics["mreg_cache_misses_total"] >= 2  # they overlapped: one transfer served them
    assert metrics["mreg_served_bytes_total"] == 4 * len(data)
    assert blob_files(s3_daemon.home) == []


def test_the_scrub_quarantines_a_damaged_object_and_the_client_gets_the_right_bytes(
        test_hub: TestHub, tmp_path: Path, s3_url: str, seaweed: SeaweedServer) -> None:
    prefix = s3_url.split("/", 3)[3]
    daemon = start_daemon(tmp_path / "home", hub_with_repo(test_hub).endpoint, "--store", s3_url,
                          "--min-every", "0.2s", "--scrub-every", "0.2s")
    try:
        first = hf_hub_download(REPO, "weights.bin", cache_dir=tmp_path / "c1", endpoint=daemon.url, token=False)
        assert Path(first).read_bytes() == WEIGHTS
        key = f"{prefix}/blobs/{sha256(WEIGHTS)}"
        seaweed.client().put_object(Bucket=BUCKET, Key=key, Body=b"x" + WEIGHTS[1:])  # rot, behind mreg's back
        wait_for(lambda: daemon.metrics()["mreg_scrub_quarantined_blobs_total"] == 1, 30, "the quarantine")
        assert f"quarantine/{sha256(WEIGHTS)}" in objects(seaweed, prefix)
        second = hf_hub_download(REPO, "weights.bin", cache_dir=tmp_path / "c2", endpoint=daemon.url, token=False)
        assert Path(second).read_bytes() == WEIGHTS
        assert test_hub.stats.cdn_bytes == 2 * len(WEIGHTS)  # fetched again from upstream, verified
        assert objects(seaweed, prefix) == {f"blobs/{sha256(WEIGHTS)}": len(WEIGHTS)}  # the damaged copy dropped
    finally:
        assert daemon.stop() == 0, daemon.log.read_text()


def test_a_client_gets_its_last_byte_while_the_bucket_is_slow_to_take_the_file(
        s3_daemon: Daemon, test_hub: TestHub, seaweed: SeaweedServer, s3_url: str, tmp_path: Path) -> None:
    data = random.Random(5).randbytes(48 * 2**20)  # three 16 MiB parts to upload
    test_hub.add_repo(small_repo("testorg/s3-slow", {"big.bin": data}))
    test_hub.faults.bandwidth = 24_000_000
    done: dict = {}

    def client() -> None:
        done["path"] = hf_hub_download("testorg/s3-slow", "big.bin", cache_dir=tmp_path / "hf",
                                       endpoint=s3_daemon.url, token=False)
        done["publishing"] = s3_daemon.metrics()["mreg_active_transfers"]

    thread = threading.Thread(target=client)
    thread.start()
    wait_for(lambda: test_hub.stats.cdn_bytes >= len(data), 30, "upstream's last byte")
    seaweed.process.send_signal(signal.SIGSTOP)  # the bucket stops answering: the publish hangs
    try:
        thread.join(30)  # huggingface_hub gives up on a body silent for 10 s
        assert not thread.is_alive(), "the client waited for the publish"
        assert done["publishing"] == 1  # it finished while its file was still being published
    finally:
        seaweed.process.send_signal(signal.SIGCONT)
    assert sha256(Path(done["path"]).read_bytes()) == sha256(data)
    wait_for(lambda: s3_daemon.metrics()["mreg_active_transfers"] == 0, 60, "the publish")
    assert objects(seaweed, s3_url.split("/", 3)[3])[f"blobs/{sha256(data)}"] == len(data)
    status, _, body = s3_daemon.get("/testorg/s3-slow/resolve/main/big.bin", {"Range": "bytes=-5"})
    assert (status, body) == (206, data[-5:])


def test_a_mirror_job_whose_file_arrives_corrupted_once_fetches_it_again(s3_daemon: Daemon,
                                                                          test_hub: TestHub) -> None:
    """As a lone pull does (#14.9): the fill's bad bytes are dropped and the file is fetched once more at once, so the
    job ends done, not failed until its next sync."""
    data = random.Random(9).randbytes(2 * 2**20)
    repo = test_hub.add_repo(small_repo("testorg/s3-corrupt-once", {"data.bin": data, "README.md": "# c\n"}))
    sha = repo.head.files["data.bin"].blob.sha256
    assert sha is not None
    test_hub.faults.corrupt("data.bin", count=1)
    assert call(s3_daemon, "POST", "/v1/jobs", {"repo": "testorg/s3-corrupt-once"})[0] in (200, 201, 202)
    job = wait_job(s3_daemon, "testorg/s3-corrupt-once", 60, status="done")
    assert job["error"] is None
    assert test_hub.stats.bytes_by_sha256[sha] == 2 * len(data)  # the file twice, nothing more
    status, _, body = s3_daemon.get("/testorg/s3-corrupt-once/resolve/main/data.bin")
    assert status == 200 and sha256(body) == sha
