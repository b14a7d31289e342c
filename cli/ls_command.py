"""`mreg ls`: the repos in the local store.

On the embedded SQLite catalog the listing is read with the standard library alone
(``registry.catalog.listing.read_sqlite``): no SQLAlchemy, no event loop, so the command starts at
once. Any other database, or a catalog that needs a migration, goes through the ``Catalog``.
"""

from __future__ import annotations

import click

from mreg.registry.catalog import listing
from mreg.registry.catalog.records import RepoSummary
from mreg.registry.config import Settings
from mreg.registry.units import human_size

from mreg.cli.common import _echo_json, _run, json_option


@click.command("ls")
@json_option
def ls_command(as_json: bool) -> None:
    """List the repos in the local store."""
    settings = Settings.from_env()
    database = listing.sqlite_file(settings.database_url)
    repos = listing.read_sqlite(database) if database is not None else None
    if repos is None:
        repos = _run(_list_through_catalog)(settings)
    if as_json:
        _echo_json([{"repo": r.repo.repo_id, "repo_type": r.repo.repo_type, "commit": r.commit,
                     "refs": list(r.refs), "files": r.files, "size": r.size, "complete": r.complete,
                     "updated_at": r.updated_at.isoformat(), "upstream": r.upstream,
                     "last_used": r.last_used.isoformat() if r.last_used else None, "pinned": r.pinned,
                     "mirrored": r.mirrored} for r in repos])
        return
    if not repos:
        click.echo("no repos in the store (try: mreg pull ORG/NAME)", err=True)
    for r in repos:
        state = "complete" if r.complete else "partial"
        refs = ",".join(r.refs) or "-"
        kept = "pinned" if r.pinned else "mirrored" if r.mirrored else "-"
        used = r.last_used.strftime("%Y-%m-%d %H:%M") if r.last_used else "-"
        click.echo(f"{str(r.repo):50} {r.commit[:12]}  {refs:12} {r.files:5d} files  {human_size(r.size):>10}  "
                   f"{state:8}  {used:16}  {kept:8}  {r.upstream or '-'}")


async def _list_through_catalog(settings: Settings) -> list[RepoSummary]:
    from mreg.registry.local import open_local  # imports SQLAlchemy: only on this path

    async with open_local(settings) as local:
        return await local.catalog.list_repos()
