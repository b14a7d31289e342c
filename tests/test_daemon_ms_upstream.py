"""`mreg serve --upstream modelscope+URL`: Hub clients (the real huggingface_hub) get repos the mirror
fetches from ModelScope (`TestModelScope`), byte-identical, one upstream copy for every client,
ModelScope's sha256 as the ETag the bytes are verified against, and huggingface_hub's own errors;
the `modelscope` client shares the same store through the daemon's ModelScope routes.
"""

from __future__ import annotations

import hashlib
import http.client
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import RepositoryNotFoundError
from modelscope.hub.snapshot_download import snapshot_download as ms_snapshot_download
from modelscope_hub.config import set_default_config

from tests.daemons import Daemon, connection, start_daemon
from tests.test_daemon_modelscope import use_mirror
from tests.testhub import (
    HubRepo,
    TestModelScope,
    dataset_repo,
    generated_file,
    small_repo,
)

pytestmark = pytest.mark.timeout(120)

REPO = "msorg/tiny"
SECRET = "alice/secret"
DATASET = "msorg/tiny-dataset"
ALICE = "ms_test_alice"


@pytest.fixture
def modelscope(tmp_path: Path) -> Iterator[TestModelScope]:
    with TestModelScope(tokens={ALICE: "alice"}) as ms:
        big = generated_file(tmp_path / "data" / "weights.bin", 1_500_000, seed=3)
        ms.add_repo(small_repo(REPO, {"README.md": "# tiny\n", "config.json": '{"model_type": "llama"}\n',
                                      "nested/dir/notes.txt": "notes\n" * 100, "weights.bin": big}))
        ms.add_repo(dataset_repo(DATASET))
        ms.add_repo(small_repo(SECRET, {"README.md": "# secret\n"}, private=True, owner="alice"))
        yield ms


@pytest.fixture
def daemon(modelscope: TestModelScope, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Daemon]:
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    running = start_daemon(tmp_path / "home", "http://127.0.0.1:9", "--upstream", f"modelscope+{modelscope.endpoint}")
    try:
        yield running
    finally:
        assert running.stop() == 0, running.log.read_text()


def served(repo: HubRepo) -> dict[str, bytes]:
    return {path: entry.blob.read(0, entry.blob.size) for path, entry in repo.head.files.items()}


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_snapshot_and_file_downloads_share_one_upstream_copy(daemon: Daemon, modelscope: TestModelScope,
                                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = modelscope.repo(REPO)
    files = served(repo)
    first = Path(snapshot_download(REPO, cache_dir=tmp_path / "c1", endpoint=daemon.url, token=False))
    assert tree_bytes(first) == files
    assert first.name == repo.head.sha  # ModelScope's master is the Hub's main, at the same commit
    second = Path(snapshot_download(REPO, cache_dir=tmp_path / "c2", endpoint=daemon.url, token=False))
    single = hf_hub_download(REPO, "nested/dir/notes.txt", cache_dir=tmp_path / "c3", endpoint=daemon.url,
                             token=False)
    assert tree_bytes(second) == files and Path(single).read_bytes() == files["nested/dir/notes.txt"]
    use_mirror(monkeypatch, tmp_path, daemon.url)
    try:
        folder = Path(ms_snapshot_download(REPO, cache_dir=str(tmp_path / "ms")))  # ModelScope's client, same store
    finally:
        set_default_config(None)
    assert tree_bytes(folder) == files
    for path, content in files.items():  # each file crossed from ModelScope once, for four clients
        assert modelscope.stats.bytes_by_sha256[hashlib.sha256(content).hexdigest()] == len(content), path


def test_answers_are_shaped_as_the_hub_s(daemon: Daemon, modelscope: TestModelScope) -> None:
    repo = modelscope.repo(REPO)
    weights = repo.head.files["weights.bin"].blob
    api = HfApi(endpoint=daemon.url, token=False)
    info = api.model_info(REPO, files_metadata=True)
    assert info.sha == repo.head.sha and {s.rfilename for s in info.siblings or []} == set(repo.head.files)
    sibling = next(s for s in info.siblings or [] if s.rfilename == "weights.bin")
    assert sibling.size == weights.size and sibling.lfs is not None and sibling.lfs.sha256 == weights.sha256
    tree = {e.path: e for e in api.list_repo_tree(REPO, recursive=True)}
    assert set(tree) == {*repo.head.files, "nested", "nested/dir"}
    assert tree["weights.bin"].blob_id == repo.head.files["weights.bin"].oid  # the Hub's git oid of its LFS pointer
    assert [e.path for e in api.list_repo_tree(REPO, path_in_repo="nested/dir")] == ["nested/dir/notes.txt"]
    found = api.get_paths_info(REPO, ["config.json", "nested", "absent.txt"])
    assert [e.path for e in found] == ["config.json", "nested"]
    status, headers, _ = daemon.head(f"/{REPO}/resolve/main/weights.bin")
    assert status == 200 and headers["X-Repo-Commit"] == repo.head.sha
    assert headers["ETag"] == headers["X-Linked-Etag"] == f'"{weights.sha256}"'
    assert headers["X-Linked-Size"] == headers["Content-Length"] == str(weights.size)


def test_a_listing_without_commit_ids_is_pinned(daemon: Daemon, modelscope: TestModelScope, tmp_path: Path) -> None:
    modelscope.commit_ids = False  # the commit is then the digest of master's listing
    path = hf_hub_download(REPO, "weights.bin", cache_dir=tmp_path / "c1", endpoint=daemon.url, token=False)
    assert Path(path).read_bytes() == served(modelscope.repo(REPO))["weights.bin"]


def test_a_missing_repo_is_huggingface_hub_s_repository_not_found(daemon: Daemon, tmp_path: Path) -> None:
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("msorg/missing", "README.md", cache_dir=tmp_path / "c1", endpoint=daemon.url, token=False)
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download("msorg/missing", cache_dir=tmp_path / "c2", endpoint=daemon.url, token=False)


def test_corrupt_bytes_from_modelscope_are_never_served_complete(daemon: Daemon, modelscope: TestModelScope) -> None:
    content = served(modelscope.repo(REPO))["weights.bin"]
    modelscope.faults.corrupt("weights.bin", count=1)
    modelscope.faults.throttle = 2_000_000
    conn = connection(daemon.url)
    conn.request("GET", f"/{REPO}/resolve/main/weights.bin")
    response = conn.getresponse()
    assert response.status == 200 and response.getheader("Content-Length") == str(len(content))
    with pytest.raises(http.client.IncompleteRead) as cut:
        response.read()
    conn.close()
    assert 0 < len(cut.value.partial) < len(content)
    assert not any(p.stat().st_size == len(content) for p in (daemon.home / "blobs").rglob("*") if p.is_file())
    modelscope.faults.throttle = None
    status, _, body = daemon.get(f"/{REPO}/resolve/main/weights.bin")  # the fault is spent: a clean download
    assert status == 200 and body == content


def test_a_private_repo_is_served_to_the_tokens_modelscope_lets_read_it(daemon: Daemon, modelscope: TestModelScope,
                                                                       tmp_path: Path) -> None:
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(SECRET, "README.md", cache_dir=tmp_path / "c1", endpoint=daemon.url, token=False)
    path = hf_hub_download(SECRET, "README.md", cache_dir=tmp_path / "c2", endpoint=daemon.url, token=ALICE)
    assert Path(path).read_text() == "# secret\n"
    with pytest.raises(RepositoryNotFoundError):  # stored now, still not for anonymous callers
        hf_hub_download(SECRET, "README.md", cache_dir=tmp_path / "c3", endpoint=daemon.url, token=False)
    assert ALICE.encode() not in daemon.log.read_bytes()


def test_refs_name_main_and_hub_only_routes_answer_501(daemon: Daemon, modelscope: TestModelScope) -> None:
    api = HfApi(endpoint=daemon.url, token=False)
    refs = api.list_repo_refs(REPO)
    assert [(b.name, b.target_commit) for b in refs.branches] == [("main", modelscope.repo(REPO).head.sha)]
    status, _, body = daemon.get("/api/models?search=tiny")
    assert status == 501 and b"ModelScope upstream" in body


def test_a_dataset_snapshot(daemon: Daemon, modelscope: TestModelScope, tmp_path: Path) -> None:
    folder = Path(snapshot_download(DATASET, repo_type="dataset", cache_dir=tmp_path / "c1", endpoint=daemon.url,
                                    token=False))
    assert tree_bytes(folder) == served(modelscope.repo(DATASET, "dataset"))


@pytest.mark.parametrize("header", ["bytes=1000000-", "bytes=-300000", "bytes=200000-1199999"])
def test_a_range_of_a_file_modelscope_serves_without_range_support(daemon: Daemon, modelscope: TestModelScope,
                                                                    header: str) -> None:
    """ModelScope serves its own files ignoring Range: the transfer a range joins fetches such a file (one
    part) as a tail only, never cut where the range starts."""
    modelscope.inline_ranges = False
    weights = modelscope.repo(REPO).head.files["weights.bin"].blob
    data = weights.read(0, weights.size)
    status, headers, body = daemon.get(f"/{REPO}/resolve/main/weights.bin", {"Range": header})
    first, _, last = header.removeprefix("bytes=").partition("-")
    start = len(data) - int(last) if not first else int(first)
    end = int(last) + 1 if first and last else len(data)
    assert status == 206 and headers["Content-Range"] == f"bytes {start}-{end - 1}/{len(data)}"
    assert body == data[start:end]
    status, _, body = daemon.get(f"/{REPO}/resolve/main/weights.bin")  # stored whole
    assert status == 200 and body == data
