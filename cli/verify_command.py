"""`mreg verify`: re-hash a local revision's files; with ``--repair``, fetch the bad ones again from upstream."""

from __future__ import annotations

import dataclasses
import sys

import click

from mreg.registry.config import Settings
from mreg.registry.errors import UpstreamUnavailableError
from mreg.registry.local import open_local
from mreg.registry.maintenance import Repair, repair, resolve_local, verify
from mreg.registry.pull import PullOptions
from mreg.registry.repo import RepoRef
from mreg.registry.upstream import configured as upstreams
from mreg.registry.upstream.fallback import pull_from
from mreg.registry.upstream.health import HEALTH_FILE, Health
from mreg.registry.workspace import open_workspace

from mreg.cli.common import _echo_json, _run, json_option, repo_type_option, revision_option

REPAIR_CONNECTIONS = 8


@click.command("verify")
@click.argument("repo_id")
@revision_option
@repo_type_option
@click.option("--repair", "fix", is_flag=True, help="Fetch every bad file again from the upstream the revision came "
              "from (verified, as a pull does) and relink it; exit 4 only if one could not be.")
@json_option
@_run
async def verify_command(repo_id: str, revision: str, repo_type: str, fix: bool, as_json: bool) -> None:
    """Re-hash a local repo's files against upstream's hashes; exit 4 on any mismatch (with --repair: on any
    file it could not fetch again).

    A blob whose bytes changed on disk is set aside (quarantined), so the next pull, or the daemon, fetches
    the file again; --repair does it now."""
    repo = RepoRef.parse(repo_id, repo_type)
    settings = Settings.from_env()
    if fix:
        commit, done = await _repair(settings, repo, revision)
        checks, bad, repaired = done.checks, done.failed, done.repaired
    else:
        async with open_local(settings) as local:
            commit = await resolve_local(local.catalog, repo, revision)
            checks = await verify(local.store, local.catalog, repo, commit)
        bad, repaired = [c for c in checks if not c.ok], []
    absent = sum(1 for c in checks if c.state == "not downloaded")
    if as_json:
        data: dict[str, object] = {"repo": repo.repo_id, "commit": commit, "ok": not bad,
                                   "files": [dataclasses.asdict(c) for c in checks]}
        if fix:
            data["repaired"] = repaired
        _echo_json(data)
    else:
        for path in repaired:
            click.echo(f"repaired {path}", err=True)
        for c in bad:
            click.echo(f"BAD {c.path}: {c.problem}", err=True)
        left_out = f" ({absent} not downloaded)" if absent else ""
        fixed = f"; {len(repaired)} repaired" if fix else ""
        click.echo(f"{repo}@{commit[:12]}: {len(checks) - len(bad) - absent} of {len(checks)} files "
                   f"verified{left_out}{fixed}")
    if bad:
        sys.exit(4)


async def _repair(settings: Settings, repo: RepoRef, revision: str) -> tuple[str, Repair]:
    """Verify, fetch the bad files again through ``mreg pull``'s code, verify them again."""
    config = upstreams.load()
    async with open_workspace(settings, None, REPAIR_CONNECTIONS) as ws:
        commit = await resolve_local(ws.catalog, repo, revision)
        recorded = {r.commit: r.upstream for r in await ws.catalog.revisions(repo)}.get(commit)
        chosen = [u for u in config.upstreams if u.name == recorded] or config.select(config.source)

        async def refetch(paths: frozenset[str]) -> None:
            if settings.offline:
                raise UpstreamUnavailableError("offline (HF_HUB_OFFLINE is set)")
            pulled, _, upstream = await pull_from(
                chosen, repo, None, PullOptions(revision=commit, paths=paths), session=ws.session, store=ws.store,
                catalog=ws.catalog, health=Health(settings.home / HEALTH_FILE), start_timeout=config.start_timeout)
            if pulled.source == "local":
                raise UpstreamUnavailableError(f"{upstream.label} is unreachable")

        return commit, await repair(ws.store, ws.catalog, repo, commit, refetch)
