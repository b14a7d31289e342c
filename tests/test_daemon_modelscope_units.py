"""The ModelScope routes' pure parts: path routing, revision names, JSON shapes, refusal statuses."""

from __future__ import annotations

import asyncio

import pytest

from mreg.daemon.serving.commits import CommitMeta
from mreg.daemon.modelscope.shapes import (
    epoch,
    error_envelope,
    files_view,
    hub_revision,
    listed_paths,
    model_view,
    ms_branch,
    page,
    ref_targets,
    refusal_message,
    refusal_status,
    revisions_view,
)
from mreg.daemon.modelscope.paths import MsPath, parse_ms_path
from mreg.daemon.serving.transfers import Transfer
from mreg.registry.download import FileSpec
from mreg.registry.errors import TransferFailedError, UsageError
from mreg.registry.repo import RepoRef

MODEL = RepoRef("model", "org/name")
DATASET = RepoRef("dataset", "org/name")
COMMIT = "a" * 40
LFS_SHA = "b" * 64


@pytest.mark.parametrize(("raw", "expected"), [
    ("/api/v1/models/org/name", MsPath("info", MODEL)),
    ("/api/v1/models/org/name/revisions?EndTime=1700000000", MsPath("revisions", MODEL)),
    ("/api/v1/models/org/name/repo/files?Revision=master&Recursive=True", MsPath("files", MODEL)),
    ("/api/v1/models/org/name/repo?Revision=v1&FilePath=a%2Fb.bin", MsPath("file", MODEL)),
    ("/api/v1/models/org/na%6De/repo", MsPath("file", MODEL)),
    ("/api/v1/repos/internalAccelerationInfo", MsPath("acceleration")),
    ("/api/v1/models/org", None),
    ("/api/v1/models/org/name/archive/zip/master", None),
    ("/api/v1/datasets/org/name/repo/tree?Revision=master&PageNumber=2&PageSize=200", MsPath("files", DATASET)),
    ("/api/v1/datasets/org/name/repo?FilePath=data%2Ftrain.csv", MsPath("file", DATASET)),
    ("/api/v1/datasets/org/name", MsPath("info", DATASET)),
    ("/api/v1/datasets/org/name/repo/files", None),
    ("/api/v1/models/org/name/repo/tree", None),
    ("/api/v1/studios/org/name/repo", None),
    ("/api/v1/login", None),
])
def test_modelscope_paths(raw: str, expected: MsPath | None) -> None:
    assert parse_ms_path(raw) == expected


@pytest.mark.parametrize("raw", ["/api/v1/models/org/../repo", "/api/v1/models/org/a--b", "/api/v1/models//name"])
def test_bad_repo_ids_are_usage_errors(raw: str) -> None:
    with pytest.raises(UsageError):
        parse_ms_path(raw)


def test_master_is_the_hub_default_branch() -> None:
    assert [hub_revision(r) for r in (None, "", "master", "v1.0", "dev", COMMIT)] == [
        "main", "main", "main", "v1.0", "dev", COMMIT]
    assert (ms_branch("main"), ms_branch("dev")) == ("master", "dev")


@pytest.mark.parametrize(("status", "code", "expected"), [
    (401, "RepoNotFound", 404),  # a private repo to an anonymous caller: not found, as for anyone else
    (404, "RepoNotFound", 404),
    (404, "RevisionNotFound", 404),
    (404, "EntryNotFound", 404),
    (401, "GatedRepo", 401),
    (403, "GatedRepo", 403),
    (401, None, 401),  # a token upstream does not know
    (400, "BadRequest", 400),
])
def test_hub_refusals_keep_their_meaning(status: int, code: str | None, expected: int) -> None:
    assert refusal_status(status, code) == expected


def test_refusal_messages() -> None:
    assert "Repository not found" in refusal_message("RepoNotFound", "Invalid username or password.")
    assert refusal_message("GatedRepo", "Access to model x is restricted.") == "Access to model x is restricted."


def test_error_envelope() -> None:
    assert error_envelope(404, "gone", "r1") == {"Code": 404, "Data": None, "Message": "gone", "RequestId": "r1",
                                                 "Success": False}


def test_epoch_of_hub_times() -> None:
    assert epoch("2024-01-02T03:04:05.000Z") == 1704164645
    assert [epoch(v) for v in (None, 17, "yesterday")] == [0, 0, 0]


def test_revisions_from_hub_refs() -> None:
    refs = {"branches": [{"name": "main", "ref": "refs/heads/main", "targetCommit": COMMIT},
                         {"name": "dev", "targetCommit": "c" * 40}, {"name": 3}, "junk"],
            "tags": [{"name": "v1", "targetCommit": COMMIT}], "converts": []}
    targets = ref_targets(refs)
    assert targets == {"branches": {"main": COMMIT, "dev": "c" * 40}, "tags": {"v1": COMMIT}}
    assert ref_targets(None) == ref_targets([]) == {"branches": {}, "tags": {}}
    view = revisions_view(targets, {COMMIT: 1700000000})
    assert view == {"RevisionMap": {
        "Branches": [{"Revision": "dev", "CommitId": "c" * 40, "CreatedAt": 0},
                     {"Revision": "master", "CommitId": COMMIT, "CreatedAt": 1700000000}],
        "Tags": [{"Revision": "v1", "CommitId": COMMIT, "CreatedAt": 1700000000}]}}
    assert revisions_view(targets, {COMMIT: 1700000000}, end_time=1700000000)["RevisionMap"]["Tags"] != []
    assert revisions_view(targets, {COMMIT: 1700000000}, end_time=1699999999)["RevisionMap"]["Tags"] == []


def commit_meta(private: bool = False) -> CommitMeta:
    entries = [
        {"type": "file", "path": "README.md", "oid": "1" * 40, "size": 5},
        {"type": "directory", "path": "sub", "oid": "2" * 40, "size": 0},
        {"type": "file", "path": "sub/w.bin", "oid": "3" * 40, "size": 9,
         "lfs": {"oid": LFS_SHA, "size": 9, "pointerSize": 130}},
        {"type": "directory", "path": "sub/deep", "oid": "4" * 40, "size": 0},
        {"type": "file", "path": "sub/deep/n.txt", "oid": "5" * 40, "size": 3},
    ]
    files = {
        "README.md": FileSpec("README.md", 5, "1" * 40),
        "sub/w.bin": FileSpec("sub/w.bin", 9, "3" * 40, LFS_SHA),
        "sub/deep/n.txt": FileSpec("sub/deep/n.txt", 3, "5" * 40),
    }
    info = {"sha": COMMIT, "private": private, "tags": ["bert", 3], "likes": 7, "downloads": "many",
            "cardData": {"license": "mit"}, "config": {"model_type": "bert"},
            "createdAt": "2024-01-02T03:04:05.000Z", "lastModified": "2024-01-03T03:04:05.000Z"}
    return CommitMeta(MODEL, COMMIT, info, entries, files)


def test_listings_by_folder() -> None:
    meta = commit_meta()
    assert listed_paths(meta, "", True) == ["sub", "sub/deep", "README.md", "sub/w.bin", "sub/deep/n.txt"]
    assert listed_paths(meta, "", False) == ["sub", "README.md"]
    assert listed_paths(meta, "sub", False) == ["sub/deep", "sub/w.bin"]
    assert listed_paths(meta, "sub/deep", True) == ["sub/deep/n.txt"]
    assert listed_paths(meta, "README.md", True) is None
    assert listed_paths(meta, "nowhere", False) is None


def test_pages() -> None:
    paths = [str(i) for i in range(5)]
    assert page(paths, None, None) == page(paths, "3", None) == paths
    assert (page(paths, "1", "2"), page(paths, "3", "2"), page(paths, "4", "2")) == (["0", "1"], ["4"], [])
    assert page(paths, None, "3") == ["0", "1", "2"]
    assert [page(paths, n, s) for n, s in (("0", "2"), ("1", "0"), ("x", "2"), ("1", "-1"))] == [None] * 4


def test_file_entries_carry_sha256_from_lfs_or_the_store() -> None:
    meta = commit_meta()
    view = files_view(meta, ["sub", "README.md", "sub/w.bin", "sub/deep/n.txt"], {"README.md": "c" * 64})
    assert view["IsVisual"] == 0 and [e["Path"] for e in view["Files"]] == [
        "sub", "README.md", "sub/w.bin", "sub/deep/n.txt"]
    by_path = {e["Path"]: e for e in view["Files"]}
    assert by_path["sub"] == {"Id": "", "IsLFS": False, "Mode": "16384", "Name": "sub", "Path": "sub",
                              "Revision": COMMIT, "Sha256": "", "Size": 0, "Type": "tree"}
    assert by_path["sub/w.bin"] == {"Id": "3" * 40, "IsLFS": True, "Mode": "33188", "Name": "w.bin",
                                    "Path": "sub/w.bin", "Revision": COMMIT, "Sha256": LFS_SHA, "Size": 9,
                                    "Type": "blob"}
    assert (by_path["README.md"]["Sha256"], by_path["README.md"]["IsLFS"]) == ("c" * 64, False)
    assert by_path["sub/deep/n.txt"]["Sha256"] == ""  # not known to the mirror (offline, not stored)


def test_model_view() -> None:
    view = model_view(commit_meta())
    assert (view["Path"], view["Name"], view["Revision"], view["CommitId"]) == ("org", "name", "master", COMMIT)
    assert (view["License"], view["Tags"], view["Stars"], view["Downloads"]) == ("mit", ["bert"], 7, 0)
    assert (view["ModelType"], view["Visibility"], view["CreatedTime"]) == (["bert"], 5, 1704164645)
    assert model_view(commit_meta(private=True))["Visibility"] == 1


async def test_a_transfer_is_verified_or_fails() -> None:
    spec = FileSpec("w.bin", 10, "1" * 40)
    done, failed = Transfer(spec, None), Transfer(spec, None)  # type: ignore[arg-type]
    waiting = asyncio.gather(done.verified(), asyncio.wait_for(failed.verified(), 5), return_exceptions=True)
    await asyncio.sleep(0)  # a yield: both readers start waiting
    done.succeed("d" * 64)
    failed.fail("bytes did not verify")
    sha, error = await waiting
    assert sha == "d" * 64 and isinstance(error, TransferFailedError)
