"""Which Hub route a raw request path names (sans I/O).

Searches (``/api/models``, ``/api/datasets``) are matched whole; other routes work on the raw
path, by the literal markers ``/revision/``, ``/tree/``, ``/paths-info/``, ``/refs`` and
``/resolve/``: a repo id is one or two segments right before its marker, never found by counting
segments. Revisions arrive percent-encoded (``refs%2Fpr%2F1``) and are decoded here.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from mreg.registry.repo import RepoRef, check_revision

API_TYPES = {"models": "model", "datasets": "dataset"}
API_MARKERS = ("revision", "tree", "paths-info", "refs")


@dataclass(frozen=True)
class HubPath:
    """A parsed Hub route. ``kind`` is one of search, info, tree, paths-info, refs, resolve, whoami.

    ``revision`` is None for repo info without ``/revision/`` (the default branch); ``path`` is the
    file (resolve) or folder (tree) inside the repo, "" for none.
    """

    kind: str
    repo: RepoRef | None = None
    revision: str | None = None
    path: str = ""


def _split_repo(segments: list[str], markers: tuple[str, ...]) -> tuple[str, str, list[str]] | None:
    """(repo id, marker, segments after it) when 1 or 2 segments are followed by a marker."""
    for n in (2, 1):
        if len(segments) > n and segments[n] in markers and all(segments[:n]):
            return unquote("/".join(segments[:n])), segments[n], segments[n + 1 :]
    return None


def parse_hub_path(raw_path: str) -> HubPath | None:
    """The Hub route ``raw_path`` (query allowed) names, or None. Raises UsageError for a bad repo id or
    revision (the caller's 400: nothing malformed is sent upstream)."""
    segments = raw_path.partition("?")[0].split("/")[1:]
    if segments == ["api", "whoami-v2"]:
        return HubPath("whoami")
    if len(segments) == 2 and segments[0] == "api" and segments[1] in API_TYPES:
        return HubPath("search")
    if len(segments) > 2 and segments[0] == "api":
        return _parse_api(segments[1], segments[2:])
    repo_type = "model"
    if segments and segments[0] == "datasets":
        repo_type, segments = "dataset", segments[1:]
    split = _split_repo(segments, ("resolve",))
    if split is None or len(split[2]) < 2 or not split[2][-1]:
        return None
    repo_id, _, tail = split
    repo = RepoRef.parse(repo_id, repo_type)
    return HubPath("resolve", repo, check_revision(unquote(tail[0])), unquote("/".join(tail[1:])))


def _parse_api(type_segment: str, rest: list[str]) -> HubPath | None:
    repo_type = API_TYPES.get(type_segment)
    if repo_type is None:
        return None
    split = _split_repo(rest, API_MARKERS)
    if split is None:
        if len(rest) <= 2 and all(rest):
            return HubPath("info", RepoRef.parse(unquote("/".join(rest)), repo_type))
        return None
    repo_id, marker, tail = split
    repo = RepoRef.parse(repo_id, repo_type)
    if marker == "refs":
        return HubPath("refs", repo) if not tail else None
    if not tail or not tail[0]:
        return None
    if marker == "tree":
        return HubPath("tree", repo, check_revision(unquote(tail[0])), unquote("/".join(tail[1:])).strip("/"))
    kind = "info" if marker == "revision" else marker
    return HubPath(kind, repo, check_revision(unquote("/".join(tail))))
