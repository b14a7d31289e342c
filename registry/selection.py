"""Choosing files by ``--include``/``--exclude`` globs, with huggingface_hub's pattern semantics."""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatch


def _normalise(pattern: str) -> str:
    # As huggingface_hub: a pattern naming a folder ("sub/") selects everything below it.
    return pattern + "*" if pattern.endswith("/") else pattern


def selected(path: str, include: Sequence[str] = (), exclude: Sequence[str] = ()) -> bool:
    """True when ``path`` matches some include glob (or there are none) and no exclude glob."""
    if include and not any(fnmatch(path, _normalise(p)) for p in include):
        return False
    return not any(fnmatch(path, _normalise(p)) for p in exclude)

