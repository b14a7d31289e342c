"""`mreg serve --store s3://… --redirect-to-store`: a stored LFS file is answered with a 302 to a presigned URL of
its object (SeaweedFS, tests/seaweed.py), with the Hub's headers, so huggingface_hub verifies and caches it as
usual while the replica sends no byte of it; a miss still streams and fills the bucket; small git files stay
inline; gated files are redirected only for callers upstream accepts; refused without an S3 store.

The store is reached through a relay named ``localhost`` (``--store-public-url``): another host name than the
daemon's 127.0.0.1, as huggingface_hub follows a HEAD redirect to the same host (by name, in some versions), and
the relay counts the bytes the store sent to clients."""

from __future__ import annotations

import asyncio
import hashlib
import signal
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from click.testing import CliRunner
from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
from huggingface_hub.errors import GatedRepoError

from mreg.cli.main import main
from mreg.cli.serve_command import serve_command
from tests.daemons import Daemon, DaemonThread, start_daemon
from tests.relay import Relay, relay
from tests.seaweed import SeaweedServer
from tests.test_daemon_s3 import REPO, WEIGHTS, hub_with_repo
from tests.testhub import TestHub, small_repo

pytestmark = pytest.mark.timeout(120)
TTL = 120
ALICE, BOB = "hf_test_alice", "hf_test_bob"
GATED = "testorg/gated-s3"
SHA = hashlib.sha256(WEIGHTS).hexdigest()


@pytest.fixture
def store_relay(seaweed: SeaweedServer) -> Iterator[Relay]:
    """The store as clients reach it: ``localhost`` and a port of its own."""
    parts = urlsplit(seaweed.endpoint)
    assert parts.hostname and parts.port
    with relay((parts.hostname, parts.port)) as running:
        yield running


def public_url(store: Relay) -> str:
    return store.url.replace("127.0.0.1", "localhost")


@pytest.fixture
def redirecting(test_hub: TestHub, tmp_path: Path, s3_url: str, store_relay: Relay) -> Iterator[Daemon]:
    running = start_daemon(tmp_path / "home", hub_with_repo(test_hub).endpoint, "--store", s3_url,
                           "--redirect-to-store", "--redirect-ttl", str(TTL), "--store-public-url",
                           public_url(store_relay))
    try:
        yield running
    finally:
        assert running.stop() == 0, running.log.read_text()


def hub_headers(commit: str, sha256: str, size: int) -> dict[str, str]:
    """The Hub headers of an LFS file, as the streaming answer sends them."""
    return {"X-Repo-Commit": commit, "ETag": f'"{sha256}"', "X-Linked-Etag": f'"{sha256}"', "X-Linked-Size": str(size)}


def ranged_get(url: str, rng: str) -> tuple[int, bytes, str]:
    """GET ``url`` with ``Range: rng``, following redirects as aiohttp does: (status, body, final URL)."""

    async def get() -> tuple[int, bytes, str]:
        async with aiohttp.ClientSession() as session, session.get(url, headers={"Range": rng}) as response:
            return response.status, await response.read(), str(response.url)

    return asyncio.run(get())


def test_warm_reads_are_redirected_to_the_store_and_verified_by_huggingface_hub(
        redirecting: Daemon, test_hub: TestHub, store_relay: Relay, tmp_path: Path) -> None:
    cold = hf_hub_download(REPO, "weights.bin", cache_dir=tmp_path / "c1", endpoint=redirecting.url, token=False)
    assert Path(cold).read_bytes() == WEIGHTS
    metrics = redirecting.metrics()
    assert (metrics["mreg_store_redirects_total"], metrics["mreg_served_bytes_total"]) == (0, len(WEIGHTS))  # a miss
    assert store_relay.returned == 0

    warm = hf_hub_download(REPO, "weights.bin", cache_dir=tmp_path / "c2", endpoint=redirecting.url, token=False)
    assert Path(warm).read_bytes() == WEIGHTS
    metrics = redirecting.metrics()
    assert metrics["mreg_served_bytes_total"] == len(WEIGHTS)  # not one more body byte from the replica
    assert metrics["mreg_store_redirects_total"] == 1  # its HEAD: the GET went to the store directly
    assert store_relay.returned > len(WEIGHTS)  # the store sent the bytes (and its headers)
    assert test_hub.stats.cdn_bytes == len(WEIGHTS)

    commit = test_hub.repo(REPO).head.sha
    meta = get_hf_file_metadata(hf_hub_url(REPO, "weights.bin", endpoint=redirecting.url), token=False)
    assert (meta.commit_hash, meta.etag, meta.size) == (commit, SHA, len(WEIGHTS))
    assert meta.location.startswith(public_url(store_relay) + "/")
    want = hub_headers(commit, SHA, len(WEIGHTS))
    for method in ("HEAD", "GET"):
        status, headers, body = getattr(redirecting, method.lower())(f"/{REPO}/resolve/main/weights.bin",
                                                                     {"Authorization": f"Bearer {ALICE}"})
        assert (status, body) == (302, b""), method
        assert {name: headers[name] for name in want} == want, method
        location = urlsplit(headers["Location"])
        assert f"{location.scheme}://{location.netloc}" == public_url(store_relay)
        assert parse_qs(location.query)["X-Amz-Expires"] == [str(TTL)]  # short-lived, Signature Version 4
        assert ALICE not in headers["Location"]
        assert ALICE not in redirecting.log.read_text() and "X-Amz-Signature" not in redirecting.log.read_text()

    for rng, want_body in {"bytes=0-0": WEIGHTS[:1], "bytes=1048570-1048585": WEIGHTS[1048570:1048586],
                           "bytes=-7": WEIGHTS[-7:]}.items():
        status, body, final = ranged_get(f"{redirecting.url}/{REPO}/resolve/{commit}/weights.bin", rng)
        assert (status, body) == (206, want_body), rng
        assert final.startswith(public_url(store_relay) + "/"), rng  # the client re-sent its Range to the store
    assert redirecting.metrics()["mreg_served_bytes_total"] == len(WEIGHTS)

    status, headers, body = redirecting.get(f"/{REPO}/resolve/main/config.json")  # a git file: inline
    assert (status, body) == (200, b'{"model_type": "llama", "hidden_size": 8}\n')


def test_a_gated_file_is_redirected_only_for_callers_upstream_accepts(
        test_hub: TestHub, tmp_path: Path, s3_url: str, seaweed: SeaweedServer) -> None:
    """The default URL names the endpoint the daemon uses (127.0.0.1); clients reach the daemon as localhost."""
    repo = test_hub.add_repo(small_repo(GATED, gated="manual", allowed_users={"alice"}))
    weights = repo.head.files["weights.bin"].blob.read()
    daemon = start_daemon(tmp_path / "home", test_hub.endpoint, "--store", s3_url, "--redirect-to-store")
    try:
        endpoint = daemon.url.replace("127.0.0.1", "localhost")
        first = hf_hub_download(GATED, "weights.bin", cache_dir=tmp_path / "a1", endpoint=endpoint, token=ALICE)
        assert Path(first).read_bytes() == weights
        url = hf_hub_url(GATED, "weights.bin", endpoint=endpoint)
        for token, status in ((False, 401), (BOB, 403)):
            with pytest.raises(GatedRepoError) as refused:
                get_hf_file_metadata(url, token=token)
            assert refused.value.response.status_code == status
            assert "Location" not in refused.value.response.headers
            with pytest.raises(GatedRepoError):
                hf_hub_download(GATED, "weights.bin", cache_dir=tmp_path / "refused", endpoint=endpoint, token=token)
        assert daemon.metrics()["mreg_store_redirects_total"] == 0

        meta = get_hf_file_metadata(url, token=ALICE)
        assert meta.location.startswith(f"{seaweed.endpoint}/{s3_url[len('s3://'):]}/blobs/")
        assert ALICE not in meta.location
        again = hf_hub_download(GATED, "weights.bin", cache_dir=tmp_path / "a2", endpoint=endpoint, token=ALICE)
        assert Path(again).read_bytes() == weights
        metrics = daemon.metrics()
        assert (metrics["mreg_store_redirects_total"], metrics["mreg_served_bytes_total"]) == (2, len(weights))
    finally:
        assert daemon.stop() == 0, daemon.log.read_text()


def test_a_range_that_may_continue_a_failed_transfer_is_streamed_whole(redirecting: Daemon, tmp_path: Path) -> None:
    assert isinstance(redirecting, DaemonThread)
    hf_hub_download(REPO, "weights.bin", cache_dir=tmp_path / "c1", endpoint=redirecting.url, token=False)
    assert redirecting.get(f"/{REPO}/resolve/main/weights.bin", {"Range": "bytes=5-"})[0] == 302
    redirecting.call(lambda mirror: mirror.transfers.failed.remember(SHA))
    status, _, body = redirecting.get(f"/{REPO}/resolve/main/weights.bin", {"Range": "bytes=5-"})
    assert (status, body) == (200, WEIGHTS)
    assert redirecting.get(f"/{REPO}/resolve/main/weights.bin", {"Range": "bytes=0-9"})[0] == 302


def test_the_url_is_signed_without_asking_the_store(redirecting: Daemon, seaweed: SeaweedServer) -> None:
    assert isinstance(redirecting, DaemonThread)
    seaweed.process.send_signal(signal.SIGSTOP)  # a request to the store would hang
    try:
        location = redirecting.call(lambda mirror: mirror.redirects.location(SHA), deadline=10)
    finally:
        seaweed.process.send_signal(signal.SIGCONT)
    assert SHA in location and "X-Amz-Signature=" in location


def test_redirect_options_are_refused_without_an_s3_store_and_read_from_env_and_config(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"MREG_HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "MREG_STORE": ""}
    config = tmp_path / "xdg" / "mreg" / "config.toml"
    config.parent.mkdir(parents=True)
    cases = {(("--redirect-to-store",), ""): "needs an S3 store",
             ((), "[serve]\nredirect_to_store = true\n"): "needs an S3 store",
             (("--store-public-url", "http://s3.example"), ""): "only used with --redirect-to-store",
             (("--store", "s3://bucket/p", "--redirect-to-store", "--store-public-url", "ftp://u:secret@x"), ""):
                 "invalid S3 endpoint"}
    for (args, toml), says in cases.items():
        config.write_text(toml)
        result = CliRunner().invoke(main, ["serve", "--port", "0", *args], env=env)
        assert result.exit_code == 2, result.output
        assert says in result.output and len(result.output.strip().splitlines()) == 1, result.output
        assert "secret" not in result.output
    result = CliRunner().invoke(main, ["serve", "--port", "0"], env={**env, "MREG_REDIRECT_TO_STORE": "1"})
    assert (result.exit_code, "needs an S3 store" in result.output) == (2, True), result.output
    result = CliRunner().invoke(main, ["serve", "--store", "s3://bucket/p", "--redirect-ttl", "0"], env=env)
    assert (result.exit_code, "Invalid value for '--redirect-ttl'" in result.output) == (2, True), result.output
    assert not (tmp_path / "home" / "blobs").exists()

    config.write_text('[serve]\nredirect_ttl = 60\nstore_public_url = "https://s3.example:9000"\n')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("MREG_REDIRECT_TO_STORE", "true")
    params = serve_command.make_context("serve", []).params
    assert (params["redirect_to_store"], params["redirect_ttl"], params["store_public_url"]) == (
        True, 60, "https://s3.example:9000")
    monkeypatch.setenv("MREG_REDIRECT_TTL", "30")
    assert serve_command.make_context("serve", ["--no-redirect-to-store"]).params["redirect_ttl"] == 30
