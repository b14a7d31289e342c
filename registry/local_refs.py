"""A local revision's commit read from the store's own files (``refs/``, ``snapshots/``), without the catalog.

``mreg path`` answers from here, so it starts without loading the catalog's database layer; what the
store cannot tell (a revision only inspected, never linked) is left to ``maintenance.resolve_local``.
"""

from __future__ import annotations

from mreg.registry.errors import UnsafePathError
from mreg.registry.repo import RepoRef
from mreg.registry.store import Store

HEX = frozenset("0123456789abcdef")
MIN_PREFIX = 7


def stored_commit(store: Store, repo: RepoRef, revision: str) -> str | None:
    """The commit a stored ref, a snapshot's full commit or a unique 7+ digit prefix of one stands for;
    None when the store alone cannot tell."""
    try:
        commit = store.read_ref(repo, revision)
    except UnsafePathError:
        return None
    if commit is not None:
        return commit
    prefix = revision.lower()
    if not MIN_PREFIX <= len(prefix) <= 40 or not HEX.issuperset(prefix):
        return None
    try:
        matches = [p.name for p in (store.repo_dir(repo) / "snapshots").iterdir() if p.name.startswith(prefix)]
    except OSError:
        return None
    return matches[0] if len(matches) == 1 else None
