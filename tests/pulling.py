"""Helpers for tests that pull from the test hub in process, with timeouts shrunk to test speed."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mreg.registry.config import Settings
from mreg.registry.download import Tuning
from mreg.registry.upstream.http import RetryPolicy
from mreg.registry.pull import NullProgress, PullOptions, PullProgress, PullResult, pull
from mreg.registry.repo import RepoRef
from mreg.registry.workspace import open_workspace

FAST_RETRY = RetryPolicy(attempts=6, backoff=0.01, max_backoff=0.1, max_retry_after=2.0)
FAST_TUNING = Tuning(connections=8, min_part=1024 * 1024, stall_timeout=1.0, backoff=0.01)


def settings_for(endpoint: str, home: Path, offline: bool = False) -> Settings:
    return Settings(home=home, database_url=f"sqlite+aiosqlite:///{home / 'catalog.db'}", endpoint=endpoint,
                    offline=offline)


async def pull_repo(endpoint: str, home: Path, repo_id: str, *, repo_type: str = "model", token: str | None = None,
                    offline: bool = False, retry: RetryPolicy = FAST_RETRY, progress: PullProgress = NullProgress(),
                    **options: object) -> PullResult:
    """Pull with mreg's real client, store and catalog under ``home``."""
    tuning = options.pop("tuning", FAST_TUNING)
    assert isinstance(tuning, Tuning)
    opts = PullOptions(tuning=tuning, offline=offline, **options)  # type: ignore[arg-type]
    settings = settings_for(endpoint, home, offline)
    async with open_workspace(settings, token, tuning.connections, retry) as ws:
        return await pull(RepoRef.parse(repo_id, repo_type), opts, client=ws.client, store=ws.store,
                          catalog=ws.catalog, progress=progress)


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` (following symlinks) as relpath → bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def with_connections(n: int) -> Tuning:
    return dataclasses.replace(FAST_TUNING, connections=n)
