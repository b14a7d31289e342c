"""ModelScope's file lists shaped as the Hub's JSON (sans I/O), for Hub clients of a ModelScope upstream.

ModelScope lists a sha256 for every file, so every file is shown as the Hub shows an LFS file:
``lfs.oid`` is the sha256 (the ETag huggingface_hub names the blob by, and what the mirror verifies
the bytes against) and the entry's git ``oid`` is that of the file's LFS pointer. huggingface_hub
never recomputes a git sha1 of the bytes it gets; it checks sha256 ETags only.
"""

from __future__ import annotations

import hashlib
from typing import Any

from mreg.registry.upstream.client import RemoteFile
from mreg.registry.repo import RepoRef


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer file of content with this sha256 and size."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def git_oid(content: bytes) -> str:
    """The git blob id of ``content``."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _file_entry(remote: RemoteFile) -> dict[str, Any]:
    sha256 = remote.lfs_sha256 or ""
    pointer = lfs_pointer(sha256, remote.size)
    return {"type": "file", "oid": git_oid(pointer), "size": remote.size, "path": remote.path,
            "lfs": {"oid": sha256, "size": remote.size, "pointerSize": len(pointer)}}


def tree_entries(files: list[RemoteFile], commit: str) -> list[dict[str, Any]]:
    """A recursive Hub tree listing of ``files``: each folder (before what it holds), then each file."""
    entries: list[dict[str, Any]] = []
    folders: set[str] = set()
    for remote in sorted(files, key=lambda f: f.path):
        parts = remote.path.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            if folder not in folders:
                folders.add(folder)
                oid = hashlib.sha1(f"{commit}\0{folder}".encode()).hexdigest()
                entries.append({"type": "directory", "oid": oid, "size": 0, "path": folder})
        entries.append(_file_entry(remote))
    return entries


def repo_info(repo: RepoRef, commit: str, private: bool, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The Hub's repo info (its ``blobs=true`` form) for ``repo`` at ``commit`` with these tree entries."""
    siblings = [{"rfilename": e["path"], "blobId": e["oid"], "size": e["size"],
                 "lfs": {"sha256": e["lfs"]["oid"], "size": e["size"], "pointerSize": e["lfs"]["pointerSize"]}}
                for e in entries if e["type"] == "file"]
    author = repo.repo_id.partition("/")[0]
    return {"_id": commit[:24], "id": repo.repo_id, **({"modelId": repo.repo_id} if repo.repo_type == "model" else {}),
            "author": author, "sha": commit, "private": private, "gated": False, "disabled": False,
            "tags": [], "siblings": siblings}


def refs(commit: str) -> dict[str, Any]:
    """The Hub's refs answer for a repo whose only branch the mirror names is ``main``, at ``commit``."""
    return {"branches": [{"name": "main", "ref": "refs/heads/main", "targetCommit": commit}], "tags": [],
            "converts": []}
