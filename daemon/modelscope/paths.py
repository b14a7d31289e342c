"""Which ModelScope route a raw request path names (sans I/O).

    GET      /api/v1/{models|datasets}/{owner}/{name}       info
    GET      /api/v1/{models|datasets}/{owner}/{name}/revisions
    GET      /api/v1/models/{owner}/{name}/repo/files       files   (?Revision=&Recursive=&Root=)
    GET      /api/v1/datasets/{owner}/{name}/repo/tree      files   (… &PageNumber=&PageSize=)
    GET|HEAD /api/v1/{models|datasets}/{owner}/{name}/repo  file    (?Revision=&FilePath=)
    GET      /api/v1/repos/internalAccelerationInfo         acceleration

The repo id is the two segments after the type (percent-decoded); the query is read by the handlers.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from mreg.registry.repo import RepoRef

PREFIX = "/api/v1/"
"""Every ModelScope route starts with this; the Hub's never do."""
API_TYPES = {"models": "model", "datasets": "dataset"}
COMMON_ROUTES: dict[tuple[str, ...], str] = {(): "info", ("revisions",): "revisions", ("repo",): "file"}
REPO_ROUTES: dict[str, dict[tuple[str, ...], str]] = {
    "model": {**COMMON_ROUTES, ("repo", "files"): "files"},
    "dataset": {**COMMON_ROUTES, ("repo", "tree"): "files"},
}
"""Per repo type: the segments after the repo id → route kind."""


@dataclass(frozen=True)
class MsPath:
    """A parsed ModelScope route: ``kind`` is one of info, revisions, files, file, acceleration."""

    kind: str
    repo: RepoRef | None = None


def parse_ms_path(raw_path: str) -> MsPath | None:
    """The ModelScope route ``raw_path`` (query allowed) names, or None. Raises UsageError for a bad repo id."""
    segments = raw_path.partition("?")[0].split("/")[1:]
    if segments == ["api", "v1", "repos", "internalAccelerationInfo"]:
        return MsPath("acceleration")
    repo_type = API_TYPES.get(segments[2]) if len(segments) >= 5 and segments[:2] == ["api", "v1"] else None
    kind = REPO_ROUTES[repo_type].get(tuple(segments[5:])) if repo_type is not None else None
    if repo_type is None or kind is None:
        return None
    return MsPath(kind, RepoRef.parse(f"{unquote(segments[3])}/{unquote(segments[4])}", repo_type))
