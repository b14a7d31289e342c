"""The one place that builds Hub URLs (routes as huggingface_hub uses them)."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote, urlencode

from mreg.registry.repo import RepoRef
from mreg.registry.upstream.http import redacted, same_origin

__all__ = ["models_search_url", "redacted", "refs_url", "repo_info_url", "resolve_url", "same_origin", "tree_url"]


def _rev(revision: str) -> str:
    # Revisions are encoded with no safe characters: refs/pr/1 -> refs%2Fpr%2F1.
    return quote(revision, safe="")


def repo_info_url(endpoint: str, repo: RepoRef, revision: str | None = None) -> str:
    url = f"{endpoint}/api/{repo.api_segment}/{repo.repo_id}"
    return f"{url}/revision/{_rev(revision)}" if revision is not None else url


def tree_url(endpoint: str, repo: RepoRef, revision: str) -> str:
    return f"{endpoint}/api/{repo.api_segment}/{repo.repo_id}/tree/{_rev(revision)}?recursive=true&expand=false"


def refs_url(endpoint: str, repo: RepoRef, include_prs: bool = False) -> str:
    url = f"{endpoint}/api/{repo.api_segment}/{repo.repo_id}/refs"
    return f"{url}?include_prs=1" if include_prs else url


def resolve_url(endpoint: str, repo: RepoRef, revision: str, path: str) -> str:
    prefix = "" if repo.repo_type == "model" else f"{repo.api_segment}/"
    return f"{endpoint}/{prefix}{repo.repo_id}/resolve/{_rev(revision)}/{quote(path)}"


def models_search_url(endpoint: str, search: str | None, author: str | None, filters: Sequence[str],
                      sort: str, limit: int) -> str:
    """`GET /api/models` as huggingface_hub's list_models asks it (filter tags ANDed, sorted descending)."""
    query = [("search", search)] if search else []
    query += [("author", author)] if author else []
    query += [("filter", f) for f in filters]
    query += [("sort", sort), ("direction", "-1"), ("limit", str(limit))]
    return f"{endpoint}/api/models?{urlencode(query)}"
