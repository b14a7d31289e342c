"""The ``mreg`` command: pull, path, ls, verify, rm, gc, inspect, search, serve (and, from their own
modules, convert, modelfile, ollama and mirror)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import click
from rich.console import Console

from mreg.daemon.config import ServeConfig
from mreg.registry import __version__
from mreg.registry.config import Settings
from mreg.registry.download import Tuning
from mreg.registry.errors import UsageError
from mreg.registry.errors import UpstreamUnavailableError
from mreg.registry.upstream.hub import HubClient
from mreg.registry.inspect.reading import CONCURRENCY as INSPECT_CONCURRENCY
from mreg.registry.inspect.repo import inspect_local, inspect_remote
from mreg.registry.maintenance import collect_garbage, remove, resolve_local, verify
from mreg.registry.jobs.mirror import parse_interval, parse_rate
from mreg.registry.pull import PullOptions
from mreg.registry.repo import RepoRef
from mreg.registry.catalog.search import FORMATS, Query, hit_json, search
from mreg.registry.upstream.fallback import client_for, pull_from
from mreg.registry.upstream.health import HEALTH_FILE, Health
from mreg.registry.upstream import configured as upstreams
from mreg.registry.units import human_size
from mreg.registry.upstream.configured import SOURCES, parse_serve_upstream, split_source
from mreg.registry.workspace import open_workspace

from mreg.cli.common import _echo_json, _run, exclude_option, include_option, json_option, repo_type_option, revision_option
from mreg.cli.convert_command import convert_command
from mreg.cli.mirror_commands import mirror_command
from mreg.cli.ollama_commands import modelfile_command, ollama_command
from mreg.cli.progress import PlainProgress, RichProgress
from mreg.cli.views import hit_text, inspection_json, inspection_text


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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mreg")
def main() -> None:
    """mreg: pull, verify and serve Hugging Face models from one content-addressed store."""


@main.command("pull")
@click.argument("repo_id")
@revision_option
@repo_type_option
@include_option
@exclude_option
@click.option("--quant", metavar="QUANT", help="GGUF quant (any case; q4_k = Q4_K_M): only its file(s) and small "
              "metadata files, from a GGUF repo quantized from REPO_ID if it has none. A repo of several "
              "quants pulled without --quant or globs gets the default, Q4_K_M.")
@click.option("--local-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Also write the files as plain files into DIR.")
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
                       exclude: tuple[str, ...], quant: str | None, local_dir: Path | None, connections: int,
                       token: str | None, source: str | None, also_from: tuple[str, ...], as_json: bool) -> None:
    """Download REPO_ID at a revision into the store; print the snapshot folder last."""
    settings = Settings.from_env()
    if quant is not None and (include or exclude):
        raise UsageError("--quant picks the files itself: drop --include/--exclude")
    config = upstreams.load()
    repo_id, chosen = _upstreams_for(config, repo_id, source, token)
    repo = RepoRef.parse(repo_id, repo_type)
    options = PullOptions(revision=revision, include=include, exclude=exclude, local_dir=local_dir,
                          tuning=dataclasses.replace(Tuning(), connections=connections), offline=settings.offline)
    console = Console(stderr=True)
    progress = RichProgress(console) if console.is_terminal and not as_json else PlainProgress()
    async with open_workspace(settings, None, connections * (len(chosen) + len(also_from))) as ws:
        options = dataclasses.replace(options, mirrors=tuple(HubClient(ws.session, url) for url in also_from))
        with progress:
            result, choice, upstream = await pull_from(
                chosen, repo, quant, options, session=ws.session, store=ws.store, catalog=ws.catalog,
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


@main.command("path")
@click.argument("repo_id")
@revision_option
@repo_type_option
@_run
async def path_command(repo_id: str, revision: str, repo_type: str) -> None:
    """Print the snapshot folder of a local repo."""
    settings = Settings.from_env()
    repo = RepoRef.parse(repo_id, repo_type)
    async with open_workspace(settings, None) as ws:
        commit = await resolve_local(ws.catalog, repo, revision)
        click.echo(str(ws.store.snapshot_dir(repo, commit)))


@main.command("ls")
@json_option
@_run
async def ls_command(as_json: bool) -> None:
    """List the repos in the local store."""
    async with open_workspace(Settings.from_env(), None) as ws:
        repos = await ws.catalog.list_repos()
    if as_json:
        _echo_json([{"repo": r.repo.repo_id, "repo_type": r.repo.repo_type, "commit": r.commit,
                     "refs": list(r.refs), "files": r.files, "size": r.size, "complete": r.complete,
                     "updated_at": r.updated_at.isoformat(), "upstream": r.upstream} for r in repos])
        return
    if not repos:
        click.echo("no repos in the store (try: mreg pull ORG/NAME)", err=True)
    for r in repos:
        state = "complete" if r.complete else "partial"
        refs = ",".join(r.refs) or "-"
        click.echo(f"{str(r.repo):50} {r.commit[:12]}  {refs:12} {r.files:5d} files  {human_size(r.size):>10}  "
                   f"{state:8}  {r.upstream or '-'}")


@main.command("verify")
@click.argument("repo_id")
@revision_option
@repo_type_option
@json_option
@_run
async def verify_command(repo_id: str, revision: str, repo_type: str, as_json: bool) -> None:
    """Re-hash a local repo's files against upstream's hashes; exit 4 on any mismatch."""
    repo = RepoRef.parse(repo_id, repo_type)
    async with open_workspace(Settings.from_env(), None) as ws:
        commit = await resolve_local(ws.catalog, repo, revision)
        checks = await verify(ws.store, ws.catalog, repo, commit)
    bad = [c for c in checks if not c.ok]
    if as_json:
        _echo_json({"repo": repo.repo_id, "commit": commit, "ok": not bad,
                    "files": [dataclasses.asdict(c) for c in checks]})
    else:
        for c in bad:
            click.echo(f"BAD {c.path}: {c.problem}", err=True)
        click.echo(f"{repo}@{commit[:12]}: {len(checks) - len(bad)} of {len(checks)} files verified")
    if bad:
        sys.exit(4)


@main.command("rm")
@click.argument("repo_id")
@repo_type_option
@_run
async def rm_command(repo_id: str, repo_type: str) -> None:
    """Remove a repo (all its revisions) and free the space nothing else uses."""
    repo = RepoRef.parse(repo_id, repo_type)
    async with open_workspace(Settings.from_env(), None) as ws:
        freed = await remove(ws.store, ws.catalog, repo)
    click.echo(f"removed {repo}; freed {human_size(freed.freed_bytes)}")


@main.command("gc")
@json_option
@_run
async def gc_command(as_json: bool) -> None:
    """Delete blobs no repo uses and stale partial downloads."""
    async with open_workspace(Settings.from_env(), None) as ws:
        result = await collect_garbage(ws.store, ws.catalog)
    if as_json:
        _echo_json(dataclasses.asdict(result))
    else:
        click.echo(f"removed {result.removed_blobs} blobs and {result.removed_partials} partial downloads; "
                   f"freed {human_size(result.freed_bytes)}")



@main.command("inspect")
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


@main.command("search")
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
    async with open_workspace(Settings.from_env(), None) as ws:
        hits = await search(ws.catalog, query)
    if as_json:
        _echo_json([hit_json(h) for h in hits])
    else:
        for hit in hits:
            click.echo(hit_text(hit))
        if not hits:
            click.echo("no matching repos in the local catalog", err=True)


@main.command("serve")
@click.option("--host", default=ServeConfig.host, show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=ServeConfig.port, show_default=True,
              help="Port to listen on (0: any free port, logged at start).")
@click.option("--upstream", metavar="[KIND+]URL", help="Hub to mirror (default: HF_ENDPOINT, else https://huggingface.co); "
              "modelscope+URL mirrors a ModelScope endpoint to Hub clients.")
@click.option("--offline", is_flag=True, help="Never contact upstream; serve what the store holds (also HF_HUB_OFFLINE=1).")
@click.option("--ref-ttl", type=click.FloatRange(0), default=ServeConfig.ref_ttl, show_default=True, metavar="SECONDS",
              help="How long a branch or tag is trusted to point at the same commit before upstream is asked again.")
@click.option("--mirror-workers", type=click.IntRange(1, 64), default=ServeConfig.mirror_workers, show_default=True,
              help="Mirror jobs that sync at the same time.")
@click.option("--max-bandwidth", metavar="RATE", help="Bytes per second shared by all mirror jobs' downloads "
              "(50M, 1.5G, 800K); default: no cap.")
@click.option("--min-every", metavar="INTERVAL", help="Shortest schedule a mirror job may ask for (30s, 5m); "
              "default: 1m.")
@click.option("--admin-token", envvar="MREG_ADMIN_TOKEN", show_envvar=True,
              help="Bearer token the /v1/jobs endpoints require (always for changes; beyond loopback, "
              "where they are disabled without one, for everything). Prefer the variable: other users "
              "can see command lines.")
@_run
async def serve_command(host: str, port: int, upstream: str | None, offline: bool, ref_ttl: float,
                        mirror_workers: int, max_bandwidth: str | None, min_every: str | None,
                        admin_token: str | None) -> None:
    """Serve the store as a Hugging Face Hub mirror that pulls missing files through (until SIGTERM),
    and run the mirror jobs (``mreg mirror``).

    Point clients at it with HF_ENDPOINT=http://HOST:PORT; they keep their own tokens. Mirror jobs
    use the daemon's own token (HF_TOKEN or huggingface_hub's saved token) if there is one.
    """
    from mreg.daemon.app import build_app, serve  # the server's modules load only for `mreg serve`
    from mreg.daemon.logs import setup_logging

    settings = Settings.from_env()
    setup_logging(sys.stderr)
    kind, url = parse_serve_upstream(upstream or settings.endpoint)
    config = ServeConfig(host=host, port=port, upstream=url, upstream_kind=kind,
                         offline=offline or settings.offline, ref_ttl=ref_ttl, mirror_workers=mirror_workers,
                         max_bandwidth=parse_rate(max_bandwidth) if max_bandwidth else None,
                         min_every=parse_interval(min_every) if min_every else ServeConfig.min_every,
                         admin_token=admin_token.strip() if admin_token and admin_token.strip() else None)
    await serve(build_app(config, settings), config)


main.add_command(convert_command)
main.add_command(modelfile_command)
main.add_command(ollama_command)
main.add_command(mirror_command)


if __name__ == "__main__":
    main()
