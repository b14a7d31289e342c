"""`mreg pull` and `mreg inspect`: the commands that read from the configured upstreams."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from mreg.registry.config import Settings
from mreg.registry.download import Tuning
from mreg.registry.errors import UpstreamUnavailableError, UsageError
from mreg.registry.inspect.reading import CONCURRENCY as INSPECT_CONCURRENCY
from mreg.registry.inspect.repo import inspect_local, inspect_remote
from mreg.registry.maintenance import resolve_local
from mreg.registry.pull import PullOptions
from mreg.registry.repo import RepoRef
from mreg.registry.units import human_size
from mreg.registry.upstream import configured as upstreams
from mreg.registry.upstream.configured import SOURCES, split_source
from mreg.registry.upstream.fallback import client_for, pull_from
from mreg.registry.upstream.health import HEALTH_FILE, Health
from mreg.registry.upstream.hub import HubClient
from mreg.registry.local import catalog_on_demand
from mreg.registry.store import Store
from mreg.registry.workspace import http_session, open_workspace

from mreg.cli.common import _echo_json, _run, exclude_option, include_option, json_option, repo_type_option, revision_option
from mreg.cli.progress import pull_progress
from mreg.cli.views import inspection_json, inspection_text


def _upstreams_for(config: upstreams.UpstreamConfig, repo_id: str, source: str | None,
                   token: str | None) -> tuple[str, list[upstreams.Upstream]]:
    """(the repo id without its hf:// or ms:// prefix, the upstreams to use in order, with --token)."""
    named, repo_id = split_source(repo_id)
    if named is not None and source not in (None, named):
        raise UsageError(f"{repo_id} names the {named} source but --source says {source}")
    source = named or source or config.source
    return repo_id, upstreams.with_token(config.select(source), token, "hf" if source == "auto" else source)


source_option = click.option(
    "--source", type=click.Choice(SOURCES), help="hf, modelscope, or auto: each configured upstream in turn, "
    "passing over the unreachable, slow or failing (default: the config file's 'source', else hf). REPO_ID may "
    "also be hf://ORG/NAME or ms://ORG/NAME.")


@click.command("pull")
@click.argument("repo_id")
@revision_option
@repo_type_option
@include_option
@exclude_option
@click.option("--quant", metavar="QUANT", help="GGUF quant (any case; q4_k = Q4_K_M): only its file(s) and small "
              "metadata files, from a GGUF repo quantized from REPO_ID if it has none. A repo of several "
              "quants pulled without --quant or globs gets the default, Q4_K_M.")
@click.option("--local-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Also put the files into DIR as plain files, in one write: a copy-on-write clone, else a hard "
              "link to the read-only stored file, else (another filesystem) a copy.")
@click.option("--local-dir-copy", is_flag=True, help="Give --local-dir writable copies of its own even where a hard "
              "link could be made (a second write of every byte).")
@click.option("--connections", type=click.IntRange(1, 256), default=Tuning.connections, show_default=True,
              help="HTTP connections in parallel (split across large files).")
@click.option("--token", help="Token for the source pulled from (default: the upstream's configured token, "
              "HF_TOKEN or MODELSCOPE_API_TOKEN); with --source auto it goes to the Hub upstreams only.")
@source_option
@click.option("--also-from", "also_from", multiple=True, metavar="URL",
              help="Another Hub endpoint with the repo (repeatable): large files it holds with the same sha256 "
                   "are fetched from it and the upstream at once. The token is not sent to it.")
@json_option
@_run
async def pull_command(repo_id: str, revision: str, repo_type: str, include: tuple[str, ...],
                       exclude: tuple[str, ...], quant: str | None, local_dir: Path | None, local_dir_copy: bool,
                       connections: int, token: str | None, source: str | None, also_from: tuple[str, ...],
                       as_json: bool) -> None:
    """Download REPO_ID at a revision into the store; print the snapshot folder last."""
    settings = Settings.from_env()
    if quant is not None and (include or exclude):
        raise UsageError("--quant picks the files itself: drop --include/--exclude")
    config = upstreams.load()
    repo_id, chosen = _upstreams_for(config, repo_id, source, token)
    repo = RepoRef.parse(repo_id, repo_type)
    if local_dir_copy and local_dir is None:
        raise UsageError("--local-dir-copy needs --local-dir")
    options = PullOptions(revision=revision, include=include, exclude=exclude, local_dir=local_dir,
                          local_dir_copy=local_dir_copy,
                          tuning=dataclasses.replace(Tuning(), connections=connections), offline=settings.offline)
    progress = pull_progress(quiet=as_json)
    async with (catalog_on_demand(settings) as catalog,
                http_session(connections * (len(chosen) + len(also_from))) as session):
        options = dataclasses.replace(options, mirrors=tuple(HubClient(session, url) for url in also_from))
        with progress:
            result, choice, upstream = await pull_from(
                chosen, repo, quant, options, session=session, store=Store(settings.home), catalog=catalog,
                health=Health(settings.home / HEALTH_FILE), start_timeout=config.start_timeout, progress=progress,
                announce=lambda text: click.echo(f"mreg: {text}", err=True))
    for name, reason in result.dropped.items():
        click.echo(f"mreg: warning: {name} failed and was left out: {reason}", err=True)
    for path in result.refetched:
        click.echo(f"mreg: warning: {path} failed verification and was fetched again", err=True)
    if result.source == "local" and not settings.offline:
        click.echo(f"mreg: warning: {upstream.url} is unreachable; using the local copy", err=True)
    if as_json:
        data: dict[str, object] = {"repo": result.repo.repo_id, "commit": result.commit, "path": str(result.path),
                                   "files": [dataclasses.asdict(f) for f in result.files], "upstream": upstream.name,
                                   "refetched": list(result.refetched)}
        if also_from or len(chosen) > 1:
            data["fetched_from"] = result.by_source
        if choice is not None:
            data.update(quant=choice.label, gguf=list(choice.quant.files))
        _echo_json(data)
    else:
        if result.source == "upstream":
            if also_from or sum(1 for n in result.by_source.values() if n) > 1:
                served = " (" + ", ".join(f"{human_size(n)} from {name}" for name, n in result.by_source.items()) + ")"
            else:
                served = f" from {upstream.label}" if len(chosen) > 1 or upstream.kind != "hf" else ""
            click.echo(f"fetched {human_size(result.fetched)} for {len(result.files)} files{served}", err=True)
        click.echo(str(result.path))


@click.command("inspect")
@click.argument("repo_id")
@revision_option
@repo_type_option
@click.option("--token", help="Token for the source read from (default: the upstream's configured token, "
              "HF_TOKEN or MODELSCOPE_API_TOKEN).")
@click.option("--tensors", "with_tensors", is_flag=True, help="List every tensor of every file.")
@source_option
@json_option
@_run
async def inspect_command(repo_id: str, revision: str, repo_type: str, token: str | None, with_tensors: bool,
                          source: str | None, as_json: bool) -> None:
    """Show what a repo's weights hold (read remotely from their headers; no weights downloaded).

    With several upstreams (--source auto) the first configured one is read."""
    settings = Settings.from_env()
    repo_id, chosen = _upstreams_for(upstreams.load(), repo_id, source, token)
    repo = RepoRef.parse(repo_id, repo_type)
    async with open_workspace(settings, None, connections=INSPECT_CONCURRENCY) as ws:
        try:
            if settings.offline:
                raise UpstreamUnavailableError("offline")
            report = await inspect_remote(client_for(ws.session, chosen[0]), ws.catalog, repo, revision,
                                          chosen[0].name)
        except UpstreamUnavailableError:
            commit = await resolve_local(ws.catalog, repo, revision)
            report = await inspect_local(ws.catalog, ws.store, repo, commit, with_tensors)
    if as_json:
        _echo_json(inspection_json(report, with_tensors))
    else:
        click.echo("\n".join(inspection_text(report, with_tensors)))
