"""The repo listing (``mreg ls``, ``/v1/repos``): three plain SQL queries and the pure step that turns
their rows into one ``RepoSummary`` per revision.

The SQL is standard (it runs unchanged on SQLite and PostgreSQL) and is the only definition of the
listing. ``Catalog`` runs it through SQLAlchemy; ``read_sqlite`` runs it with the standard library's
``sqlite3`` alone, so that ``mreg ls`` on the embedded catalog starts without importing SQLAlchemy
(most of a cold start's import time). ``read_sqlite`` reads only a catalog whose schema is at head and
says so by returning None otherwise: the caller then opens the ``Catalog``, which migrates.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mreg import migrations
from mreg.registry.catalog.records import RepoSummary
from mreg.registry.repo import RepoRef

_OF_REPO = " AND repos.repo_type = :repo_type AND repos.repo_id = :repo_id"

REVISIONS = ('SELECT revisions.id, repos.repo_type, repos.repo_id, revisions."commit", revisions.state, '
             "revisions.created_at, revisions.completed_at, revisions.upstream, revisions.last_used_at, "
             'EXISTS (SELECT 1 FROM pins WHERE pins.repo = repos.id AND (pins."commit" IS NULL '
             'OR pins."commit" = revisions."commit")), '
             "EXISTS (SELECT 1 FROM mirror_jobs WHERE mirror_jobs.repo = repos.id) "
             "FROM revisions JOIN repos ON revisions.repo = repos.id WHERE 1 = 1")
"""One row per revision: id, repo type, repo id, commit, state, created, completed, upstream, last used,
pinned, mirrored."""

TOTALS = ("SELECT files.revision, COUNT(*), COALESCE(SUM(files.size), 0), "
          "COUNT(CASE WHEN files.state = 'complete' THEN 1 END), "
          "COALESCE(SUM(CASE WHEN files.state = 'complete' THEN files.size ELSE 0 END), 0) "
          "FROM files JOIN revisions ON files.revision = revisions.id JOIN repos ON revisions.repo = repos.id "
          "WHERE 1 = 1")
"""One row per revision with files: revision id, files, bytes, stored files, stored bytes."""

REFS = ('SELECT repos.repo_type, repos.repo_id, refs."commit", refs.name '
        "FROM refs JOIN repos ON refs.repo = repos.id WHERE 1 = 1")
"""One row per ref: repo type, repo id, commit, ref name (sorted here, by code point: a database's
collation may order text by a language's rules)."""

GROUP_TOTALS = " GROUP BY files.revision"

Row = Sequence[Any]


def statements(repo: RepoRef | None) -> tuple[str, str, str, dict[str, str]]:
    """The revisions, totals and refs queries (of every repo, or of ``repo``) and their parameters."""
    where, params = ("", {}) if repo is None else (_OF_REPO, {"repo_type": repo.repo_type, "repo_id": repo.repo_id})
    return REVISIONS + where, TOTALS + where + GROUP_TOTALS, REFS + where, params


def summaries(revisions: Iterable[Row], totals: Iterable[Row], refs: Iterable[Row]) -> list[RepoSummary]:
    """One summary per revision row, ranked: complete ones first, then newest first."""
    by_revision = {int(row[0]): tuple(int(n) for n in row[1:]) for row in totals}
    ref_names: dict[tuple[RepoRef, str], list[str]] = {}
    for repo_type, repo_id, commit, name in refs:
        ref_names.setdefault((RepoRef(repo_type, repo_id), commit), []).append(name)
    ranked = []
    for rev_id, repo_type, repo_id, commit, state, created, completed, upstream, used, pinned, mirrored in revisions:
        repo = RepoRef(repo_type, repo_id)
        files, size, stored_files, stored_size = by_revision.get(int(rev_id), (0, 0, 0, 0))
        created_at = _utc(created)
        updated_at = _utc(completed) if completed is not None else created_at
        summary = RepoSummary(repo=repo, commit=commit, refs=tuple(sorted(ref_names.get((repo, commit), ()))),
                              files=files, size=size, complete=state == "complete", updated_at=updated_at,
                              stored_files=stored_files, stored_size=stored_size, upstream=upstream,
                              last_used=_utc(used) if used is not None else updated_at, pinned=bool(pinned),
                              mirrored=bool(mirrored))
        ranked.append(((state == "complete", created_at, int(rev_id)), summary))
    ranked.sort(key=lambda pair: pair[0], reverse=True)
    return [summary for _, summary in ranked]


def newest_per_repo(ranked: Sequence[RepoSummary]) -> list[RepoSummary]:
    """The first (best ranked) summary of each repo, ordered by repo."""
    newest: dict[RepoRef, RepoSummary] = {}
    for summary in ranked:
        newest.setdefault(summary.repo, summary)
    return [newest[repo] for repo in sorted(newest)]


def _utc(value: datetime | str) -> datetime:
    """A stored timestamp as a timezone-aware UTC datetime (SQLite returns text without a zone)."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def sqlite_file(database_url: str) -> Path | None:
    """The file of a plain ``sqlite+aiosqlite:///PATH`` URL (the embedded default), else None."""
    prefix = "sqlite+aiosqlite:///"
    if not database_url.startswith(prefix) or "?" in database_url:
        return None
    path = database_url[len(prefix):]
    return Path(path) if path and path != ":memory:" else None


def read_sqlite(database: Path) -> list[RepoSummary] | None:
    """``mreg ls``'s summaries read from an existing SQLite catalog at schema head, else None."""
    if not database.is_file():
        return None
    try:
        with closing(sqlite3.connect(database, timeout=30)) as conn:
            versions = {row[0] for row in conn.execute("SELECT version_num FROM alembic_version")}
            if versions != {migrations.SCHEMA_HEAD}:
                return None
            revisions, totals, refs, params = statements(None)
            return newest_per_repo(summaries(conn.execute(revisions, params).fetchall(),
                                             conn.execute(totals, params).fetchall(),
                                             conn.execute(refs, params).fetchall()))
    except sqlite3.Error:
        return None  # let the Catalog open it, with its one-line errors
