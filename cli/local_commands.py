"""`mreg verify`, `rm`, `gc` and `search`: the local store and catalog, never upstream (no HTTP)."""

from __future__ import annotations

import dataclasses
import sys

import click

from mreg.registry.catalog.search import FORMATS, Query, hit_json, search
from mreg.registry.config import Settings
from mreg.registry.local import open_local
from mreg.registry.maintenance import collect_garbage, remove, resolve_local, verify
from mreg.registry.repo import RepoRef
from mreg.registry.units import human_size

from mreg.cli.common import _echo_json, _run, json_option, repo_type_option, revision_option
from mreg.cli.views import hit_text


@click.command("verify")
@click.argument("repo_id")
@revision_option
@repo_type_option
@json_option
@_run
async def verify_command(repo_id: str, revision: str, repo_type: str, as_json: bool) -> None:
    """Re-hash a local repo's files against upstream's hashes; exit 4 on any mismatch."""
    repo = RepoRef.parse(repo_id, repo_type)
    async with open_local(Settings.from_env()) as local:
        commit = await resolve_local(local.catalog, repo, revision)
        checks = await verify(local.store, local.catalog, repo, commit)
    bad = [c for c in checks if not c.ok]
    absent = sum(1 for c in checks if c.state == "not downloaded")
    if as_json:
        _echo_json({"repo": repo.repo_id, "commit": commit, "ok": not bad,
                    "files": [dataclasses.asdict(c) for c in checks]})
    else:
        for c in bad:
            click.echo(f"BAD {c.path}: {c.problem}", err=True)
        left_out = f" ({absent} not downloaded)" if absent else ""
        click.echo(f"{repo}@{commit[:12]}: {len(checks) - len(bad) - absent} of {len(checks)} files "
                   f"verified{left_out}")
    if bad:
        sys.exit(4)


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
