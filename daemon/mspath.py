"""Which ModelScope route a raw request path names (sans I/O).

    GET      /api/v1/models/{owner}/{name}                  info
    GET      /api/v1/models/{owner}/{name}/revisions        revisions
    GET      /api/v1/models/{owner}/{name}/repo/files       files      (?Revision=&Recursive=&Root=)
    GET|HEAD /api/v1/models/{owner}/{name}/repo             file       (?Revision=&FilePath=)
    GET      /api/v1/repos/internalAccelerationInfo         acceleration

The repo id is the two segments after ``models`` (percent-decoded); the query is read by the handlers.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from registry.repo import RepoRef

PREFIX = "/api/v1/"
"""Every ModelScope route starts with this; the Hub's never do."""
REPO_ROUTES = {(): "info", ("revisions",): "revisions", ("repo", "files"): "files", ("repo",): "file"}


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
    if segments[:3] != ["api", "v1", "models"] or len(segments) < 5:
        return None
    kind = REPO_ROUTES.get(tuple(segments[5:]))
    if kind is None:
        return None
    return MsPath(kind, RepoRef.parse(f"{unquote(segments[3])}/{unquote(segments[4])}"))
