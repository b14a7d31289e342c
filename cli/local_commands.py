"""`mreg rm`, `gc` and `search`: the local store and catalog, never upstream (no HTTP)."""

from __future__ import annotations

import dataclasses

import click

from mreg.registry.catalog.search import FORMATS, Query, hit_json, search
from mreg.registry.config import Settings
from mreg.registry.local import open_local
from mreg.registry.maintenance import collect_garbage, remove
from mreg.registry.repo import RepoRef
from mreg.registry.units import human_size

from mreg.cli.common import _echo_json, _run, json_option, repo_type_option
from mreg.cli.views import hit_text


@click.command("rm")
@click.argument("repo_id")
@repo_type_option
@_run
async def rm_command(repo_id: str, repo_type: str) -> None:
    """Remove a repo (all its revisions) and free the space nothing else uses."""
    repo = RepoRef.parse(repo_id, repo_type)
    async with open_local(Settings.from_env()) as local:
        freed = await remove(local.store, local.catalog, repo)
    click.echo(f"removed {repo}; freed {human_size(freed.freed_bytes)}")


@click.command("gc")
@json_option
@_run
async def gc_command(as_json: bool) -> None:
    """Delete blobs no repo uses and stale partial downloads."""
    async with open_local(Settings.from_env()) as local:
        result = await collect_garbage(local.store, local.catalog)
    if as_json:
        _echo_json(dataclasses.asdict(result))
    else:
        click.echo(f"removed {result.removed_blobs} blobs and {result.removed_partials} partial downloads; "
                   f"freed {human_size(result.freed_bytes)}")


@click.command("search")
@click.argument("text", required=False)
@click.option("--arch", help="Architecture (substring, case-insensitive), e.g. llama.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="Weights format.")
@click.option("--quant", help="GGUF quant, e.g. Q4_K_M.")
@click.option("--min-params", help="At least this many parameters (7B, 500M, 22713728).")
@click.option("--max-params", help="At most this many parameters.")
@json_option
@_run
async def search_command(text: str | None, arch: str | None, fmt: str | None, quant: str | None,
                         min_params: str | None, max_params: str | None, as_json: bool) -> None:
    """Search the local catalog (repos pulled or inspected before)."""
    query = Query.parse(text, arch, fmt, quant, min_params, max_params)
    async with open_local(Settings.from_env()) as local:
        hits = await search(local.catalog, query)
    if as_json:
        _echo_json([hit_json(h) for h in hits])
    else:
        for hit in hits:
            click.echo(hit_text(hit))
        if not hits:
            click.echo("no matching repos in the local catalog", err=True)
