"""The one place that builds ModelScope URLs (the `/api/v1` routes as the `modelscope` client uses them)."""

from __future__ import annotations

from urllib.parse import quote, urlencode

from mreg.registry.repo import RepoRef

DEFAULT_ENDPOINT = "https://modelscope.cn"


def _base(endpoint: str, repo: RepoRef) -> str:
    return f"{endpoint}/api/v1/{repo.api_segment}/{quote(repo.repo_id)}"


def repo_info_url(endpoint: str, repo: RepoRef) -> str:
    return _base(endpoint, repo)


def revisions_url(endpoint: str, repo: RepoRef) -> str:
    return f"{_base(endpoint, repo)}/revisions"


def files_url(endpoint: str, repo: RepoRef, revision: str) -> str:
    return f"{_base(endpoint, repo)}/repo/files?{urlencode({'Revision': revision, 'Recursive': 'True'})}"


def tree_url(endpoint: str, repo: RepoRef, revision: str, page: int, page_size: int) -> str:
    """A page of a dataset's file list (datasets are listed page by page, from page 1)."""
    query = {"Revision": revision, "Recursive": "True", "PageNumber": str(page), "PageSize": str(page_size)}
    return f"{_base(endpoint, repo)}/repo/tree?{urlencode(query)}"


def file_url(endpoint: str, repo: RepoRef, revision: str, path: str) -> str:
    return f"{_base(endpoint, repo)}/repo?{urlencode({'Revision': revision, 'FilePath': path})}"

