"""`mreg path`: a local repo's snapshot folder, answered from the store's files (no catalog, no HTTP)."""

from __future__ import annotations

import click

from mreg.registry.config import Settings
from mreg.registry.local_refs import stored_commit
from mreg.registry.repo import RepoRef
from mreg.registry.store import Store

from mreg.cli.common import _run, repo_type_option, revision_option


@click.command("path")
@click.argument("repo_id")
@revision_option
@repo_type_option
@_run
async def path_command(repo_id: str, revision: str, repo_type: str) -> None:
    """Print the snapshot folder of a local repo."""
    settings = Settings.from_env()
    repo = RepoRef.parse(repo_id, repo_type)
    store = Store(settings.home)
    commit = stored_commit(store, repo, revision)
    if commit is None:
        # Only the catalog can tell (or say it is not local): its database layer loads for this case alone.
        from mreg.registry.local import open_local
        from mreg.registry.maintenance import resolve_local

        async with open_local(settings) as local:
            commit = await resolve_local(local.catalog, repo, revision)
    click.echo(str(store.snapshot_dir(repo, commit)))
