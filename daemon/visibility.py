"""Who may see what the catalog holds of a repo: the rule file downloads follow, asked of upstream.

The catalog API and pages show a gated or private repo (in the list, search, detail, files and
tensors) only to callers upstream lets download its files: ``Access.refusal``, the check the
resolve route makes, with the caller's own token. Lists leave such a repo out for anyone else;
asking for it by name answers 401/403 ``GatedRepo`` (gated: upstream's own status and message) or
404 ``RepoNotFound`` (private, exactly as for a repo the catalog does not have).

Whether a repo is gated or private is in the repo info the mirror keeps per commit. A repo put in
the store without the mirror (``mreg pull``, ``mreg inspect``) has that info fetched from upstream
with the caller's token first; while upstream cannot be asked, such a repo — like a gated one this
caller was never checked for — is hidden from lists and answers 504.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import TypeVar

from mreg.registry.errors import (
    GatedRepoError,
    MregError,
    RepoNotFoundError,
    UpstreamError,
    UpstreamRefusedError,
    UpstreamUnavailableError,
)
from mreg.registry.repo import RepoRef

from mreg.daemon.state import Mirror

T = TypeVar("T")
CONCURRENT_CHECKS = 8


def not_found(repo: RepoRef) -> RepoNotFoundError:
    """The error for a repo the catalog does not have (and for private repos, alike)."""
    return RepoNotFoundError(f"{repo} is not in the mirror's catalog")


def _from_upstream(repo: RepoRef, refused: UpstreamRefusedError) -> MregError:
    if refused.code == "GatedRepo" and refused.http_status in (401, 403):
        return GatedRepoError(refused.headers.get("X-Error-Message") or f"{repo} is gated", refused.http_status)
    return not_found(repo)


async def refusal(mirror: Mirror, repo: RepoRef, commit: str, token: str | None) -> MregError | None:
    """None when the caller may see ``repo`` at ``commit`` (a revision the catalog has), else the error
    to answer."""
    try:
        meta = await mirror.commits.for_access_check(repo, commit, token)
        answer = await mirror.access.refusal(meta, "", token)
    except UpstreamRefusedError as refused:
        return _from_upstream(repo, refused)
    except UpstreamUnavailableError as exc:
        return UpstreamUnavailableError(f"cannot check who may see {repo}: {exc}")
    except UpstreamError as exc:
        return UpstreamError(f"cannot check who may see {repo}: {exc}")
    return None if answer is None else _from_upstream(repo, answer.refused())


async def visible(mirror: Mirror, items: Iterable[T], key: Callable[[T], tuple[RepoRef, str]],
                  token: str | None) -> list[T]:
    """The ``items`` (each naming a repo and commit through ``key``) the caller may see, in order."""
    limit = asyncio.Semaphore(CONCURRENT_CHECKS)

    async def allowed(item: T) -> bool:
        async with limit:
            return await refusal(mirror, *key(item), token) is None

    listed = list(items)
    verdicts = await asyncio.gather(*(allowed(item) for item in listed))
    return [item for item, ok in zip(listed, verdicts) if ok]
