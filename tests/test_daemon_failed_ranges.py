"""#14.1 across restarts and replicas: a client cut off by a transfer that failed verification resumes with a
Range request, and whichever daemon answers it (the same one restarted, a second one on the same store and
catalog, or a replica on the same PostgreSQL catalog) knows the transfer failed (the catalog's
``failed_transfers``) and answers with the whole file: huggingface_hub starts over, curl refuses to resume.
Served the tail of a good copy, both clients would assemble a corrupt file under the right name."""

from __future__ import annotations

import hashlib
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from huggingface_hub import hf_hub_download

from tests.daemons import Daemon, start_daemon, wait_for
from tests.relay import relay
from tests.testhub import TestHub, generated_file, small_repo

pytestmark = pytest.mark.timeout(240)

SIZE = 24_000_000  # more than huggingface_hub's first read, so the client holds bytes when the transfer fails


def address(daemon: Daemon) -> tuple[str, int]:
    parts = urlsplit(daemon.url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def failed_in_log(daemon: Daemon, path: str) -> Callable[[], bool]:
    return lambda: f"transfer of {path} failed" in daemon.log.read_text(errors="replace")


@pytest.fixture(params=["restart", "replica"])
def topology(request: pytest.FixtureRequest, test_hub: TestHub, tmp_path: Path) -> Iterator[Callable[[], Daemon]]:
    """A maker of daemons that a resumed client may reach after the first: "restart", another in-process
    daemon on the first one's home (store and SQLite catalog); "replica", one with a home of its own on the
    same PostgreSQL catalog. Every daemon made is stopped (cleanly) after the test."""
    made: list[Daemon] = []
    if request.param == "restart":
        args: tuple[str, ...] = ()
        homes = iter(lambda: tmp_path / "home", None)
    else:
        args = ("--database-url", str(request.getfixturevalue("pg_url")))
        homes = (tmp_path / f"replica{i}" / "home" for i in range(100))

    def make() -> Daemon:
        made.append(start_daemon(next(homes), test_hub.endpoint, *args))
        return made[-1]

    yield make
    for daemon in made:
        if daemon.running:
            assert daemon.stop() == 0


def test_huggingface_hub_resuming_on_another_daemon_gets_the_whole_file(topology: Callable[[], Daemon],
                                                                       test_hub: TestHub, tmp_path: Path) -> None:
    big = generated_file(tmp_path / "data" / "big.bin", SIZE, seed=21)
    test_hub.add_repo(small_repo("testorg/flaky", {"big.bin": big}))
    first, second = topology(), topology()
    test_hub.faults.corrupt("big.bin", count=1, route="cdn")  # the first transfer carries a flipped byte
    with relay(address(first)) as balancer:
        def switch_when_failed() -> None:  # huggingface_hub waits 1 s before it resumes
            wait_for(failed_in_log(first, "big.bin"), 120, "the failed transfer")
            balancer.target = address(second)

        switcher = threading.Thread(target=switch_when_failed, daemon=True)
        switcher.start()
        path = hf_hub_download("testorg/flaky", "big.bin", cache_dir=tmp_path / "hf", endpoint=balancer.url, token=False)
        switcher.join()
    assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == hashlib.sha256(big.read_bytes()).hexdigest()
    assert first.metrics()["mreg_restarted_ranges_total"] == 0
    assert second.metrics()["mreg_restarted_ranges_total"] >= 1  # the resume reached the second daemon: whole file


def test_curl_cannot_resume_on_a_restarted_daemon_or_a_replica(topology: Callable[[], Daemon], test_hub: TestHub,
                                                                tmp_path: Path) -> None:
    big = generated_file(tmp_path / "data" / "other.bin", SIZE, seed=22)
    test_hub.add_repo(small_repo("testorg/flaky", {"other.bin": big}))
    first = topology()
    test_hub.faults.corrupt("other.bin", count=1, route="cdn")
    test_hub.faults.throttle = 20_000_000
    partial = tmp_path / "other.bin"
    path = "/testorg/flaky/resolve/main/other.bin"
    cut = subprocess.run(["curl", "-sS", "-o", str(partial), first.url + path], capture_output=True, timeout=120)
    assert cut.returncode != 0 and 0 < partial.stat().st_size < SIZE  # cut off by the failed transfer
    test_hub.faults.throttle = None
    cut_at = partial.stat().st_size
    assert first.stop() == 0  # restarted (or gone: a replica takes its clients)
    second = topology()
    resumed = subprocess.run(["curl", "-sS", "-C", "-", "-o", str(partial), second.url + path], capture_output=True,
                             timeout=120)
    assert resumed.returncode == 33, resumed.stderr  # "server doesn't seem to support byte ranges"
    assert partial.stat().st_size == cut_at  # nothing spliced onto the failed transfer's bytes
    assert second.metrics()["mreg_restarted_ranges_total"] == 1
    whole = subprocess.run(["curl", "-sS", "-o", str(partial), second.url + path], capture_output=True, timeout=120)
    assert whole.returncode == 0 and partial.read_bytes() == big.read_bytes()
