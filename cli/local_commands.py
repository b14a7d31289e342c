"""`mreg rm`, `gc`, `pin`/`unpin` and `search`: the local store and catalog, never upstream (no HTTP)."""

from __future__ import annotations

import dataclasses

import click

from mreg.registry.catalog import Catalog
from mreg.registry.catalog.search import FORMATS, Query, hit_json, search
from mreg.registry.config import Settings
from mreg.registry.errors import UsageError
from mreg.registry.eviction.evict import evict
from mreg.registry.eviction.policy import Budget
from mreg.registry.local import open_local
from mreg.registry.maintenance import collect_garbage, remove, resolve_local
from mreg.registry.repo import RepoRef
from mreg.registry.units import human_size

from mreg.cli.budget_options import budget_options
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
@budget_options
@click.option("--dry-run", is_flag=True, help="Only say what eviction would remove.")
@json_option
@_run
async def gc_command(max_size: str | None, high: float, low: float, min_free: str | None, order: str,
                     evict_after: str, dry_run: bool, as_json: bool) -> None:
    """Delete blobs no repo uses and stale partial downloads; with a budget, evict revisions too."""
    budget = Budget.parse(max_size, high, low, min_free, order, evict_after)
    async with open_local(Settings.from_env()) as local:
        if not budget.active:
            result = await collect_garbage(local.store, local.catalog)
            if as_json:
                _echo_json(dataclasses.asdict(result))
            else:
                click.echo(f"removed {result.removed_blobs} blobs and {result.removed_partials} partial downloads; "
                           f"freed {human_size(result.freed_bytes)}")
            return
        report = await evict(local.store, local.catalog, budget, dry_run=dry_run)
    if as_json:
        _echo_json({**dataclasses.asdict(report), "max_size": budget.max_size, "min_free": budget.min_free})
        return
    verb = "would evict" if dry_run else "evicted"
    for e in report.evicted:
        click.echo(f"{verb} {e.repo}@{e.revision[:12]} ({human_size(e.bytes)}, {e.why})")
    limit = f" (budget {human_size(budget.max_size)})" if budget.max_size else ""
    click.echo(f"store {human_size(report.stored_before)} → {human_size(report.stored_after)}{limit}; "
               f"{len(report.evicted)} revisions {verb}")
    if report.short:
        click.echo(f"mreg: warning: {human_size(report.short)} more would have to go, but pinned, mirrored or "
                   f"in-use revisions hold {human_size(report.kept_bytes)}", err=True)


@click.command("pin")
@click.argument("target", required=False, metavar="[REPO[@REV]]")
@repo_type_option
@json_option
@_run
async def pin_command(target: str | None, repo_type: str, as_json: bool) -> None:
    """Keep a repo (or one revision) from eviction; without REPO, list the pins."""
    async with open_local(Settings.from_env()) as local:
        if target is None:
            pins = await local.catalog.pins()
            if as_json:
                _echo_json([{"repo": p.repo.repo_id, "repo_type": p.repo.repo_type, "revision": p.commit,
                             "pinned_at": p.created_at.isoformat()} for p in pins])
            for p in [] if as_json else pins:
                click.echo(f"{p.repo}@{p.commit}" if p.commit else str(p.repo))
            return
        repo, commit = await _pin_target(local.catalog, target, repo_type)
        added = await local.catalog.pin(repo, commit)
    _said("pinned" if added else "already pinned", repo, commit, as_json)


@click.command("unpin")
@click.argument("target", metavar="REPO[@REV]")
@repo_type_option
@json_option
@_run
async def unpin_command(target: str, repo_type: str, as_json: bool) -> None:
    """Let eviction remove a pinned repo (or revision) again."""
    async with open_local(Settings.from_env()) as local:
        repo, commit = await _pin_target(local.catalog, target, repo_type)
        if not await local.catalog.unpin(repo, commit):
            raise UsageError(f"{target} is not pinned (see: mreg pin)")
    _said("unpinned", repo, commit, as_json)


async def _pin_target(catalog: Catalog, target: str, repo_type: str) -> tuple[RepoRef, str | None]:
    """REPO → (repo, None); REPO@REV → (repo, the local commit REV stands for)."""
    repo_id, _, revision = target.partition("@")
    repo = RepoRef.parse(repo_id, repo_type)
    return repo, (await resolve_local(catalog, repo, revision) if revision else None)


def _said(what: str, repo: RepoRef, commit: str | None, as_json: bool) -> None:
    if as_json:
        _echo_json({"repo": repo.repo_id, "repo_type": repo.repo_type, "revision": commit, "result": what})
    else:
        click.echo(f"{what} {repo}" + (f"@{commit[:12]}" if commit else ""))


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
