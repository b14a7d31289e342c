"""The ModelScope emulation is faithful: the real `modelscope` client (1.40.2) downloads through it.

Every test drives the installed client against `TestModelScope` and checks the bytes it wrote, the
requests the emulation saw, and that the client connected nowhere but the emulation.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.testhub import HubRepo, TestModelScope
from tests.testhub.fixtures import MsEnv

_connections: list[tuple[str, int]] | None = None


def _audit(event: str, args: tuple) -> None:
    if event == "socket.connect" and _connections is not None and isinstance(args[1], tuple):
        _connections.append(args[1][:2])


sys.addaudithook(_audit)


@pytest.fixture(autouse=True)
def connections() -> Iterator[list[tuple[str, int]]]:
    """Every (host, port) this process connects a socket to during the test; after each test, every
    one of them must be a test server's (the client reaches nothing else: no telemetry, no probes)."""
    global _connections
    _connections = []
    try:
        yield _connections
        assert {host for host, _ in _connections} <= {"127.0.0.1", "127.0.0.2"}, _connections
    finally:
        _connections = None


def _tiny_repo(repo_id: str = "org/tiny", **kwargs: object) -> HubRepo:
    repo = HubRepo(repo_id, owner=repo_id.split("/")[0], **kwargs)  # type: ignore[arg-type]
    repo.commit(
        {
            "README.md": "# tiny\n",
            "config.json": '{"model_type": "tiny"}',
            "weights/model.safetensors": bytes(range(256)) * 12_000,
            "weights/notes.txt": "deep file\n",
        }
    )
    return repo


def _tree(directory: Path) -> dict[str, str]:
    return {
        p.relative_to(directory).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def _served(repo: HubRepo, revision: str = "main") -> dict[str, str]:
    commit = repo.resolve(revision)
    assert commit is not None
    return {path: entry.blob.sha256 for path, entry in commit.files.items()}


def test_snapshot_download_is_byte_identical_and_stays_local(
    ms_env: MsEnv, connections: list[tuple[str, int]]
) -> None:
    from modelscope import snapshot_download

    repo = ms_env.hub.repo("sentence-transformers/all-MiniLM-L6-v2")
    folder = Path(snapshot_download(repo.repo_id))

    assert folder.is_relative_to(ms_env.cache_dir)
    assert _tree(folder) == _served(repo)
    port = int(ms_env.hub.endpoint.rpartition(":")[2])
    assert connections and set(connections) == {("127.0.0.1", port)}
    listed = ms_env.hub.stats.find(path_contains="/repo/files?")
    assert listed and "Revision=master" in listed[0].path and "Recursive=True" in listed[0].path
    assert ms_env.hub.stats.resolve_bytes == sum(e.blob.size for e in repo.head.files.values())


def test_model_file_download_picks_revisions_and_tags(ms_env: MsEnv) -> None:
    from modelscope import model_file_download, snapshot_download

    repo = ms_env.hub.add_repo(_tiny_repo())
    repo.tag("v1.0")
    repo.commit({"config.json": '{"model_type": "tiny", "v": 2}'}, message="v2")

    old = Path(model_file_download(repo.repo_id, "config.json", revision="v1.0"))
    new = Path(model_file_download(repo.repo_id, "config.json", revision="master"))
    deep = Path(model_file_download(repo.repo_id, "weights/model.safetensors", revision="v1.0"))

    assert old.read_text() == '{"model_type": "tiny"}'
    assert new.read_text() == '{"model_type": "tiny", "v": 2}'
    assert deep.read_bytes() == bytes(range(256)) * 12_000
    tagged = Path(snapshot_download(repo.repo_id, revision="v1.0"))
    assert _tree(tagged) == _served(repo, "v1.0")


def test_get_model_files_lists_paths_sizes_and_directories(ms_env: MsEnv) -> None:
    from modelscope.hub.api import HubApi

    repo = ms_env.hub.add_repo(_tiny_repo())
    files = HubApi().get_model_files(repo.repo_id, recursive=True)

    sizes = {f["Path"]: f["Size"] for f in files}
    expected = {path: entry.blob.size for path, entry in repo.head.files.items()}
    assert sizes == {**expected, "weights": 0}
    branches, tags = HubApi().get_model_branches_and_tags(repo.repo_id)
    assert branches == ["master"] and tags == []


def test_revisions_end_time_filters_tags(ms_env: MsEnv) -> None:
    repo = ms_env.hub.add_repo(_tiny_repo())
    repo.tag("v1.0")
    url = f"{ms_env.hub.endpoint}/api/v1/models/{repo.repo_id}/revisions"

    before = requests.get(url, params={"EndTime": "1"}, timeout=10).json()
    after = requests.get(url, params={"EndTime": str(2**40)}, timeout=10).json()

    assert before["Code"] == 200 and before["Success"] is True
    assert before["Data"]["RevisionMap"]["Tags"] == []
    assert [t["Revision"] for t in after["Data"]["RevisionMap"]["Tags"]] == ["v1.0"]
    assert [b["Revision"] for b in after["Data"]["RevisionMap"]["Branches"]] == ["master"]


@pytest.mark.parametrize("inline_ranges", [True, False])
def test_client_resumes_a_cut_body(ms_env: MsEnv, inline_ranges: bool) -> None:
    from modelscope import model_file_download

    repo = ms_env.hub.add_repo(_tiny_repo())
    ms_env.hub.inline_ranges = inline_ranges
    ms_env.hub.faults.cut_body(1_000_000, route="resolve")

    path = Path(model_file_download(repo.repo_id, "weights/model.safetensors", revision="master"))

    assert path.read_bytes() == bytes(range(256)) * 12_000
    ranged = [r for r in ms_env.hub.stats.find(path_contains="FilePath=weights") if r.range]
    assert ranged and ranged[0].range == "bytes=1000000-"
    assert ranged[0].status == (206 if inline_ranges else 200)  # without Range support it starts over


def test_client_rejects_corrupt_bytes_and_refetches(ms_env: MsEnv) -> None:
    from modelscope import snapshot_download

    repo = ms_env.hub.add_repo(_tiny_repo())
    ms_env.hub.faults.corrupt("weights/model.safetensors", count=1)

    folder = Path(snapshot_download(repo.repo_id))

    assert _tree(folder) == _served(repo)
    fetches = ms_env.hub.stats.find(path_contains="FilePath=weights%2Fmodel.safetensors")
    assert len(fetches) == 2  # the first body failed the Sha256 from the file list


def test_private_repo_needs_the_owners_token(ms_env: MsEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    from modelscope import snapshot_download

    repo = ms_env.hub.add_repo(_tiny_repo("alice/secret", private=True))
    with pytest.raises(requests.HTTPError):
        snapshot_download(repo.repo_id)
    monkeypatch.setenv("MODELSCOPE_API_TOKEN", "ms_test_owner")  # a valid token of another user
    with pytest.raises(requests.HTTPError):
        snapshot_download(repo.repo_id)

    monkeypatch.setenv("MODELSCOPE_API_TOKEN", "ms_test_alice")
    folder = Path(snapshot_download(repo.repo_id))

    assert _tree(folder) == _served(repo)
    assert ms_env.hub.stats.cdn_authorization_seen == []  # no CDN here: every byte comes from the API host


def test_error_shapes_are_what_the_client_maps(ms_env: MsEnv) -> None:
    from modelscope.hub.api import HubApi
    from modelscope_hub.errors import AuthenticationError, NotExistError

    with pytest.raises(NotExistError, match="Model does not exist|模型不存在"):
        HubApi().get_model_files("nobody/nothing")
    with pytest.raises(AuthenticationError):
        HubApi(token="not-a-token").get_model_files("sentence-transformers/all-MiniLM-L6-v2")
    body = requests.get(f"{ms_env.hub.endpoint}/api/v1/models/nobody/nothing", timeout=10)
    assert body.status_code == 404
    assert body.json()["Code"] != 200 and body.json()["Success"] is False and body.json()["Message"]


def test_client_retries_a_503_file_list(ms_env: MsEnv) -> None:
    from modelscope.hub.api import HubApi

    repo = ms_env.hub.add_repo(_tiny_repo())
    ms_env.hub.faults.fail(503, count=1, route="api")

    files = HubApi().get_model_files(repo.repo_id)

    assert {f["Path"] for f in files} >= set(repo.head.files)
    statuses = [r.status for r in ms_env.hub.stats.find(path_contains="/repo/files")]
    assert statuses == [503, 200]


def test_ranged_get_answers_206_and_416(test_modelscope: TestModelScope) -> None:
    repo = test_modelscope.add_repo(_tiny_repo())
    url = f"{test_modelscope.endpoint}/api/v1/models/{repo.repo_id}/repo"
    params = {"Revision": "master", "FilePath": "weights/model.safetensors"}

    part = requests.get(url, params=params, headers={"Range": "bytes=10-19"}, timeout=10)
    past = requests.get(url, params=params, headers={"Range": "bytes=9999999-"}, timeout=10)

    assert part.status_code == 206 and part.content == (bytes(range(256)) * 12_000)[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{256 * 12_000}"
    assert past.status_code == 416


def test_get_model_and_a_rooted_listing(ms_env: MsEnv) -> None:
    from modelscope import snapshot_download
    from modelscope.hub.api import HubApi

    repo = ms_env.hub.add_repo(_tiny_repo())
    info = HubApi().get_model(repo.repo_id)
    folder = Path(snapshot_download(repo.repo_id, allow_patterns="weights/*"))

    assert (info["Owner"], info["Name"], int(info["Visibility"])) == ("org", "tiny", 5)
    assert _tree(folder) == {p: s for p, s in _served(repo).items() if p.startswith("weights/")}
    assert ms_env.hub.stats.find(path_contains="&Root=weights")  # the client listed only that folder


def test_lfs_redirects_to_the_cdn_without_the_token(ms_env: MsEnv, monkeypatch: pytest.MonkeyPatch,
                                                     connections: list[tuple[str, int]]) -> None:
    from modelscope import snapshot_download

    repo = ms_env.hub.add_repo(_tiny_repo("alice/secret", private=True))
    ms_env.hub.redirect_lfs = True
    ms_env.hub.faults.cut_body(500_000)  # on the CDN: the client resumes there
    monkeypatch.setenv("MODELSCOPE_API_TOKEN", "ms_test_alice")

    folder = Path(snapshot_download(repo.repo_id))

    assert _tree(folder) == _served(repo)
    weights = repo.head.files["weights/model.safetensors"].blob
    assert ms_env.hub.stats.cdn_bytes >= weights.size and ms_env.hub.stats.resolve_bytes < weights.size
    assert ms_env.hub.stats.cdn_authorization_seen == []
    hosts = {host for host, _ in connections}
    assert hosts == {"127.0.0.1", "127.0.0.2"}


def test_command_line_serves_modelscope(tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "tests.testhub", "--modelscope", "--no-builtin", "--big", "org/big:blob.bin=3000000",
        "--data-dir", str(tmp_path / "data"),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, cwd=Path(__file__).parent.parent, text=True)
    try:
        ready = json.loads(process.stdout.readline())  # type: ignore[union-attr]
        base = f"{ready['endpoint']}/api/v1/models/org/big"
        files = requests.get(f"{base}/repo/files", params={"Revision": "master", "Recursive": "True"}, timeout=10)
        assert [(f["Path"], f["Size"], f["IsLFS"]) for f in files.json()["Data"]["Files"]] == [
            ("blob.bin", 3_000_000, True)]
        blob = requests.get(f"{base}/repo", params={"Revision": "master", "FilePath": "blob.bin"}, timeout=10)
        assert blob.url.startswith(ready["cdn"]) and len(blob.content) == 3_000_000
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


def test_dataset_snapshot_download_pages_through_the_tree(ms_env: MsEnv) -> None:
    from modelscope import dataset_snapshot_download

    repo = HubRepo("org/data", repo_type="dataset", owner="org")
    repo.commit({f"part/{i:03d}.csv": f"{i}\n" for i in range(250)} | {"README.md": "# data\n"})
    ms_env.hub.add_repo(repo)

    folder = Path(dataset_snapshot_download(repo.repo_id))

    assert folder.is_relative_to(ms_env.cache_dir) and _tree(folder) == _served(repo)
    pages = ms_env.hub.stats.find(path_contains="/api/v1/datasets/org/data/repo/tree")
    assert len(pages) == 2 and all("PageSize=200" in p.path for p in pages)
