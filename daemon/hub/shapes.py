"""Reshaping the Hub's JSON and headers for the daemon's clients (sans I/O).

Clients must stay on plain HTTP through the mirror: ``xetHash`` is dropped from every tree,
paths-info and sibling entry, xet ``Link`` rels are dropped and pagination links are pointed at
the daemon. When upstream cannot be reached, the answers are rebuilt from what was kept per commit.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

XET_KEYS = frozenset({"xetHash"})
_LINK = re.compile(r"<([^>]*)>\s*((?:;\s*[^,;]+)*)")


def without_xet(entries: Any) -> Any:
    """A tree or paths-info listing with ``xetHash`` removed from each entry (other values as they are)."""
    if not isinstance(entries, list):
        return entries
    return [{k: v for k, v in e.items() if k not in XET_KEYS} if isinstance(e, dict) else e for e in entries]


def info_without_xet(info: Any) -> Any:
    """Repo info with ``xetHash`` removed from its siblings."""
    if isinstance(info, dict) and isinstance(info.get("siblings"), list):
        return {**info, "siblings": without_xet(info["siblings"])}
    return info


def rewrite_link(value: str, upstream: str, base: str) -> str | None:
    """The ``Link`` header for clients: xet rels dropped, every other link moved onto ``base``.

    ``upstream`` is the upstream endpoint (it may carry a path prefix, which is removed), ``base``
    the daemon's own origin as the client addressed it. None when no link is left.
    """
    kept = [f"<{base}{_relative(url, upstream)}>{params}" for url, params in _links(value)
            if "xet" not in params.lower()]
    return ", ".join(kept) or None


def _links(value: str) -> list[tuple[str, str]]:
    return [(m[1], m[2]) for m in _LINK.finditer(value)]


def _relative(url: str, upstream: str) -> str:
    """The path and query of ``url``, without the upstream endpoint's path prefix."""
    prefix = urlsplit(upstream).path.rstrip("/")
    parts = urlsplit(url)
    path = parts.path[len(prefix):] if prefix and parts.path.startswith(prefix + "/") else parts.path
    return f"{path}?{parts.query}" if parts.query else path


def info_view(info: dict[str, Any], blobs: bool, expand: Iterable[str]) -> dict[str, Any]:
    """Repo info as the Hub shapes it for ``blobs`` and ``expand``, from the kept ``blobs=true`` copy."""
    view = dict(info)
    if not blobs and isinstance(view.get("siblings"), list):
        view["siblings"] = [{"rfilename": s.get("rfilename")} for s in view["siblings"] if isinstance(s, dict)]
    wanted = set(expand)
    if wanted:
        view = {k: v for k, v in view.items() if k in ("_id", "id") or k in wanted}
    return view


def tree_view(entries: list[dict[str, Any]], path: str, recursive: bool) -> list[dict[str, Any]] | None:
    """The entries a tree listing of folder ``path`` ("" = root) shows; None if it is no folder."""
    if path and not any(e.get("path") == path and e.get("type") == "directory" for e in entries):
        return None
    prefix = f"{path}/" if path else ""
    names = ((e, e.get("path")) for e in entries)
    return [e for e, name in names if isinstance(name, str) and name.startswith(prefix)
            and (recursive or "/" not in name[len(prefix):])]


def paths_info_view(entries: list[dict[str, Any]], paths: Iterable[str]) -> list[dict[str, Any]]:
    """The entries of the listed paths that exist, in the order asked, each once."""
    by_path = {e.get("path"): e for e in entries}
    return [by_path[p] for p in dict.fromkeys(paths) if p in by_path]
