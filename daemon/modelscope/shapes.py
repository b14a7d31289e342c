"""ModelScope's JSON, built from what the mirror knows of a Hub repo (sans I/O).

ModelScope wraps every answer as ``{"Code": 200, "Success": true, "Message": "success", "Data": …,
"RequestId": …}`` and a refusal as the same envelope with the HTTP status as ``Code``, ``Success``
false and the reason in ``Message`` (the ``modelscope`` client maps 401/403/404 to its
AuthenticationError / PermissionDeniedError / NotExistError). Its default branch is ``master``:
here that is always the upstream's default branch, ``main`` on the Hub.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from mreg.registry.repo import check_revision

from mreg.daemon.serving.commits import CommitMeta

MS_DEFAULT_BRANCH = "master"
HUB_DEFAULT_BRANCH = "main"
VISIBILITY_PRIVATE, VISIBILITY_PUBLIC = 1, 5
FILE_MODE, TREE_MODE = "33188", "16384"
NOT_FOUND_CODES = frozenset({"RepoNotFound", "RevisionNotFound", "EntryNotFound"})


def hub_revision(revision: str | None) -> str:
    """The Hub revision a ModelScope ``Revision`` names (none or ``master``: the default branch); UsageError
    for a malformed one."""
    return HUB_DEFAULT_BRANCH if revision in (None, "", MS_DEFAULT_BRANCH) else check_revision(revision)


def ms_branch(name: str) -> str:
    """The ModelScope name of a Hub branch."""
    return MS_DEFAULT_BRANCH if name == HUB_DEFAULT_BRANCH else name


def envelope(data: Any, request_id: str) -> dict[str, Any]:
    """A successful answer around ``data``."""
    return {"Code": 200, "Data": data, "Message": "success", "RequestId": request_id, "Success": True}


def error_envelope(status: int, message: str, request_id: str) -> dict[str, Any]:
    """A refusal: the HTTP status as ``Code``, the reason as ``Message``."""
    return {"Code": status, "Data": None, "Message": message, "RequestId": request_id, "Success": False}


def refusal_status(status: int, error_code: str | None) -> int:
    """The status a ModelScope client gets for a Hub refusal (status, ``X-Error-Code``).

    Whatever the Hub says of a repo, revision or file it will not show (a private repo answers
    anonymous callers 401 RepoNotFound) is a 404; gates keep 401 (log in) and 403 (not accepted).
    """
    return 404 if error_code in NOT_FOUND_CODES else status


def refusal_message(error_code: str | None, message: str) -> str:
    """The reason a ModelScope client reads for a Hub refusal: the Hub's, except for a repo it will not
    show (whose Hub message, e.g. "Invalid username or password.", would mislead)."""
    if error_code == "RepoNotFound":
        return "Repository not found (a private one needs a token that upstream accepts)"
    return message


def epoch(iso: Any) -> int:
    """Seconds since the epoch of an ISO 8601 time as the Hub writes it (0 when absent or malformed)."""
    if not isinstance(iso, str):
        return 0
    try:
        return int(datetime.fromisoformat(iso).timestamp())
    except ValueError:
        return 0


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def model_view(meta: CommitMeta) -> dict[str, Any]:
    """``GET /api/v1/models/{id}``: the model at the default branch, from its Hub repo info."""
    info = meta.info
    owner, _, name = meta.repo.repo_id.rpartition("/")
    card, config = _mapping(info.get("cardData")), _mapping(info.get("config"))
    model_type = config.get("model_type")
    return {
        "Name": name,
        "Path": owner,
        "ChineseName": "",
        "Description": "",
        "Visibility": VISIBILITY_PRIVATE if meta.private else VISIBILITY_PUBLIC,
        "IsAccessible": 1,
        "License": card.get("license") if isinstance(card.get("license"), str) else "",
        "Tags": [t for t in info.get("tags") or [] if isinstance(t, str)],
        "Downloads": info.get("downloads") if isinstance(info.get("downloads"), int) else 0,
        "Stars": info.get("likes") if isinstance(info.get("likes"), int) else 0,
        "CreatedTime": epoch(info.get("createdAt")),
        "LastUpdatedTime": epoch(info.get("lastModified")),
        "ModelType": [model_type] if isinstance(model_type, str) else [],
        "Revision": MS_DEFAULT_BRANCH,
        "CommitId": meta.commit,
    }


def ref_targets(refs: Any) -> dict[str, dict[str, str]]:
    """{"branches"|"tags": {name: commit}} of a Hub refs answer (entries that are not well formed dropped)."""
    result: dict[str, dict[str, str]] = {"branches": {}, "tags": {}}
    if not isinstance(refs, dict):
        return result
    for kind, named in result.items():
        for ref in refs.get(kind) or []:
            if isinstance(ref, dict) and isinstance(ref.get("name"), str) and isinstance(ref.get("targetCommit"), str):
                named[ref["name"]] = ref["targetCommit"]
    return result


def revisions_view(targets: Mapping[str, Mapping[str, str]], dates: Mapping[str, int],
                   end_time: int | None = None) -> dict[str, Any]:
    """``GET /api/v1/models/{id}/revisions[?EndTime=T]``: branches, and tags dated up to ``end_time``.

    Each is dated by its commit (``CreatedAt``, from ``dates``: commit → epoch seconds); ``main`` is
    listed as ``master``.
    """
    def entries(named: Mapping[str, str], rename: bool) -> list[dict[str, Any]]:
        return [{"Revision": ms_branch(name) if rename else name, "CommitId": commit, "CreatedAt": dates.get(commit, 0)}
                for name, commit in sorted(named.items())]

    tags = [t for t in entries(targets["tags"], False) if end_time is None or t["CreatedAt"] <= end_time]
    return {"RevisionMap": {"Branches": entries(targets["branches"], True), "Tags": tags}}


def listed_paths(meta: CommitMeta, root: str, recursive: bool) -> list[str] | None:
    """The folders, then the files, a listing of folder ``root`` ("" = the repo) shows; None if no such folder.

    Only files the mirror serves (safe names) are listed; without ``recursive``, direct children only.
    """
    prefix = f"{root}/" if root else ""
    folders = [e["path"] for e in meta.entries if e.get("type") == "directory" and isinstance(e.get("path"), str)]
    if root and root not in folders:
        return None
    return [p for p in [*folders, *meta.files] if p.startswith(prefix) and (recursive or "/" not in p[len(prefix):])]


def page(paths: list[str], number: str | None, size: str | None) -> list[str] | None:
    """Page ``number`` (from 1, default 1) of ``size`` entries; all of them without a ``size``; None for a
    malformed page."""
    if size is None:
        return paths
    number = number or "1"
    if not (number.isdigit() and size.isdigit()) or int(number) < 1 or int(size) < 1:
        return None
    start = (int(number) - 1) * int(size)
    return paths[start : start + int(size)]


def files_view(meta: CommitMeta, paths: list[str], sha256s: Mapping[str, str]) -> dict[str, Any]:
    """A file listing: folders (``tree``) and files (``blob``, with their sha256), in the order of ``paths``.

    A file's ``Sha256`` is its LFS oid or the sha256 in ``sha256s`` ("" when the mirror cannot know it).
    """
    def entry(path: str) -> dict[str, Any]:
        spec = meta.files.get(path)
        kind = "tree" if spec is None else "blob"
        sha256 = "" if spec is None else spec.sha256 or sha256s.get(path, "")
        return {"Id": "" if spec is None else spec.git_oid, "IsLFS": spec is not None and spec.sha256 is not None,
                "Mode": FILE_MODE if spec is not None else TREE_MODE, "Name": path.rpartition("/")[2], "Path": path,
                "Revision": meta.commit, "Sha256": sha256, "Size": 0 if spec is None else spec.size, "Type": kind}

    return {"Files": [entry(p) for p in paths], "IsVisual": 0}
