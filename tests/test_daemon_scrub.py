"""#14.7: `mreg serve --scrub-every` re-hashes the store in the background; a blob damaged on disk is
quarantined (one JSON log line, counted in /metrics) and huggingface_hub then gets the right bytes, fetched
again from upstream. The real daemon in process, the test hub, the real client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import hf_hub_download

from mreg.cli.serve_command import serve_command, serve_config
from mreg.registry.blobs import LocalBlobStore
from mreg.registry.config import Settings
from mreg.registry.errors import UsageError
from tests.daemons import Daemon, start_daemon, wait_for
from tests.test_repair import flip_a_byte
from tests.testhub import TestHub, small_repo

REPO = "org/scrubbed"
SCRUB_DEADLINE = 30.0


@pytest.fixture
def daemon(test_hub: TestHub, tmp_path: Path) -> Iterator[Daemon]:
    test_hub.add_repo(small_repo(REPO))
    running = start_daemon(tmp_path / "home", test_hub.endpoint, "--min-every", "0.2s", "--scrub-every", "0.2s")
    try:
        yield running
    finally:
        assert running.stop() == 0, running.log.read_text()


def test_the_scrub_quarantines_a_damaged_blob_and_the_client_gets_the_right_bytes(
        daemon: Daemon, test_hub: TestHub, tmp_path: Path) -> None:
    first = Path(hf_hub_download(REPO, "weights.bin", cache_dir=tmp_path / "c1", endpoint=daemon.url, token=False))
    good = first.read_bytes()
    sha = test_hub.repo(REPO).head.files["weights.bin"].blob.sha256
    blob = LocalBlobStore(daemon.home).path(sha)
    wait_for(lambda: daemon.metrics()["mreg_scrub_passes_total"] >= 1, SCRUB_DEADLINE, "a scrub pass")
    assert daemon.metrics()["mreg_scrub_quarantined_blobs_total"] == 0 and blob.exists()  # an intact store stays

    flip_a_byte(blob)
    wait_for(lambda: daemon.metrics()["mreg_scrub_quarantined_blobs_total"] == 1, SCRUB_DEADLINE, "the quarantine")
    assert not blob.exists()
    lines = [json.loads(line) for line in daemon.log.read_text().splitlines()]
    [quarantined] = [line for line in lines if line.get("event") == "blob_quarantined"]
    assert quarantined["sha256"] == sha and quarantined["size"] == len(good) and quarantined["level"] == "warning"
    assert quarantined["found"] != sha

    misses = daemon.metrics()["mreg_cache_misses_total"]
    second = Path(hf_hub_download(REPO, "weights.bin", cache_dir=tmp_path / "c2", endpoint=daemon.url, token=False))
    assert second.read_bytes() == good
    assert daemon.metrics()["mreg_cache_misses_total"] == misses + 1  # fetched again from upstream
    assert blob.read_bytes() == good
    assert daemon.metrics()["mreg_scrub_quarantined_blobs_total"] == 1  # the good copy is not quarantined again


def test_scrub_options_have_the_bounds_of_a_schedule(tmp_path: Path) -> None:
    def config(*args: str) -> tuple[float | None, float]:
        options = serve_command.make_context("serve", list(args)).params
        options.pop("database_url")  # the catalog's and the store's, not the daemon's: Settings carries them
        options.pop("store")
        made = serve_config(Settings.from_env({"MREG_HOME": str(tmp_path)}), **options)
        return made.scrub_every, made.scrub_rate

    assert config() == (None, 50e6)  # off by default
    assert config("--scrub-every", "6h", "--scrub-rate", "800K") == (6 * 3600, 800e3)
    assert config("--min-every", "1s", "--scrub-every", "1.5s") == (1.5, 50e6)
    with pytest.raises(UsageError, match="--scrub-every must be between 1m and a year, not 10 seconds"):
        config("--scrub-every", "10s")
    with pytest.raises(UsageError, match="between 1m and a year"):
        config("--scrub-every", "53w")
    with pytest.raises(UsageError, match="invalid interval '2y'"):
        config("--scrub-every", "2y")
    with pytest.raises(UsageError, match="invalid bandwidth 'fast'"):
        config("--scrub-every", "1h", "--scrub-rate", "fast")
