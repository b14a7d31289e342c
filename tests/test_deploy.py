"""deploy/haproxy.cfg as shipped, in front of three `mreg serve` replicas sharing one PostgreSQL catalog:
hf_hub_download through it, every replica lists what any of them mirrored, and a replica killed with -9
costs the clients nothing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import hf_hub_download

from tests.daemons import DaemonProcess, free_port, raw, start_daemon_process, wait_for
from tests.testhub import TestHub, small_repo

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "deploy" / "haproxy.cfg"
REPO = "org/replicated"
FILES = {"a.bin": os.urandom(3 * 2**20), "b.bin": os.urandom(2 * 2**20)}


@pytest.fixture
def replicas(test_hub: TestHub, tmp_path: Path, pg_url: str) -> Iterator[list[DaemonProcess]]:
    test_hub.add_repo(small_repo(REPO, FILES))
    started: list[DaemonProcess] = []
    try:
        for i in range(3):
            started.append(start_daemon_process(tmp_path / f"replica{i + 1}" / "home", test_hub.endpoint,
                                                "--database-url", pg_url))
        yield started
    finally:
        for replica in started:
            if replica.running:
                assert replica.stop() == 0, replica.log.read_text()


@pytest.fixture
def balancer(replicas: list[DaemonProcess], tmp_path: Path) -> Iterator[str]:
    haproxy = shutil.which("haproxy") or pytest.fail("HAProxy is not installed (apt-get install haproxy; scripts/test does it)")
    port = free_port()
    env = {**os.environ, "MREG_LISTEN": f"127.0.0.1:{port}",
           **{f"MREG_REPLICA_{i + 1}": r.url.removeprefix("http://") for i, r in enumerate(replicas)}}
    log = (tmp_path / "haproxy.log").open("wb")
    process = subprocess.Popen([haproxy, "-db", "-f", str(CONFIG)], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert process.poll() is None, (tmp_path / "haproxy.log").read_text()
        try:
            return raw("GET", f"{url}/healthz")[0] == 200
        except OSError:
            return False

    try:
        wait_for(up, 30, "HAProxy passing requests to the replicas")
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        log.close()


def _served_bytes(replica: DaemonProcess) -> float:
    return replica.metrics()["mreg_served_bytes_total"]


def test_three_replicas_behind_haproxy_share_the_catalog_and_survive_one_killed(
        replicas: list[DaemonProcess], balancer: str, tmp_path: Path) -> None:
    path = hf_hub_download(REPO, "a.bin", cache_dir=tmp_path / "client1", endpoint=balancer, token=False)
    assert Path(path).read_bytes() == FILES["a.bin"]
    for replica in replicas:  # one catalog: each replica lists what another mirrored
        listed = {r["repo"]: r for r in json.loads(replica.get("/v1/repos")[2])}
        assert listed[REPO]["stored_files"] >= 1, listed

    served = [r for r in replicas if _served_bytes(r) >= len(FILES["a.bin"])]
    assert len(served) == 1  # consistent hashing: the file's requests went to one replica
    served[0].process.send_signal(signal.SIGKILL)
    served[0].process.wait(timeout=30)

    # the very next request for the file, before any health check noticed: passed on to a live replica at once
    status, _, body = raw("GET", f"{balancer}/{REPO}/resolve/main/a.bin")
    assert (status, body) == (200, FILES["a.bin"])
    for n, name in enumerate(["a.bin", "b.bin"] * 2):
        path = hf_hub_download(REPO, name, cache_dir=tmp_path / f"after{n}", endpoint=balancer, token=False)
        assert Path(path).read_bytes() == FILES[name]
