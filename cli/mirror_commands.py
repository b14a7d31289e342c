"""`mreg mirror add|ls|rm|sync`: the daemon's mirror jobs, through its /v1/jobs endpoints (registered
by `cli.main`). The daemon is found at MREG_SERVER; MREG_ADMIN_TOKEN is sent when set."""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import quote

import aiohttp
import click
from rich.console import Console
from rich.table import Table

from mreg.registry.errors import UpstreamError, UpstreamUnavailableError, UsageError
from mreg.registry.units import parse_interval
from mreg.registry.repo import RepoRef

from mreg.cli.common import _echo_json, _run, exclude_option, include_option, json_option, repo_type_option, revision_option
from mreg.cli.progress import human_size

DEFAULT_SERVER = "http://127.0.0.1:8700"
TIMEOUT = aiohttp.ClientTimeout(total=30)


async def _call(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """One request to the daemon; its JSON answer, or its error as a one-line MregError."""
    server = (os.environ.get("MREG_SERVER") or DEFAULT_SERVER).rstrip("/")
    token = os.environ.get("MREG_ADMIN_TOKEN", "").strip()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
            if method == "POST" and body is None:
                body = {}  # the daemon's API takes JSON bodies only
            async with session.request(method, server + path, json=body, headers=headers) as resp:
                text = await resp.text()
                status = resp.status
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise UpstreamUnavailableError(f"cannot reach the mreg daemon at {server} "
                                       f"({type(exc).__name__}; is `mreg serve` running? MREG_SERVER sets where)")
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if status >= 400:
        message = data.get("error") if isinstance(data, dict) else None
        error = UsageError if status < 500 else UpstreamError
        raise error(f"the daemon says: {message or f'HTTP {status}'}")
    return data


def _job_path(repo_id: str, repo_type: str) -> tuple[str, str]:
    repo = RepoRef.parse(repo_id, repo_type)
    query = "" if repo.repo_type == "model" else f"?repo_type={repo.repo_type}"
    return f"/v1/jobs/{quote(repo.repo_id)}", query


def _when(stamp: str | None) -> str:
    return stamp[:19].replace("T", " ") if stamp else "-"


def _progress(job: dict[str, Any]) -> str:
    return f"{human_size(job['bytes_done'])} / {human_size(job['bytes_total'])}"


@click.group("mirror")
def mirror_command() -> None:
    """Keep repos mirrored by the daemon (`mreg serve`), once or on a schedule."""


@mirror_command.command("add")
@click.argument("repo_id")
@revision_option
@repo_type_option
@include_option
@exclude_option
@click.option("--every", metavar="INTERVAL", help="Sync again every INTERVAL (30m, 6h, 1d); default: once.")
@json_option
@_run
async def add_command(repo_id: str, revision: str, repo_type: str, include: tuple[str, ...],
                      exclude: tuple[str, ...], every: str | None, as_json: bool) -> None:
    """Mirror REPO_ID (adding it again changes its settings and syncs it now)."""
    RepoRef.parse(repo_id, repo_type)
    body = {"repo": repo_id, "repo_type": repo_type, "revision": revision, "include": list(include),
            "exclude": list(exclude), "every": parse_interval(every) if every else None}
    job = await _call("POST", "/v1/jobs", body)
    if as_json:
        _echo_json(job)
    else:
        click.echo(f"mirroring {repo_id}@{revision}" + (f", every {every}" if every else ""))


@mirror_command.command("ls")
@json_option
@_run
async def ls_command(as_json: bool) -> None:
    """List the mirror jobs: status, bytes done/total, last and next sync, last error."""
    jobs = await _call("GET", "/v1/jobs")
    if as_json:
        _echo_json(jobs)
        return
    console = Console()
    if not jobs:
        click.echo("no mirror jobs (try: mreg mirror add ORG/NAME)", err=True)
    elif console.is_terminal:
        table = Table("repo", "status", "bytes", "last sync", "next sync", "error")
        for job in jobs:
            table.add_row(_name(job), job["status"], _progress(job), _when(job["last_sync"]),
                          _when(job["next_sync"]), job["error"] or "")
        console.print(table)
    else:
        for job in jobs:
            click.echo("\t".join((_name(job), job["status"], _progress(job), _when(job["last_sync"]),
                                  _when(job["next_sync"]), job["error"] or "")))


def _name(job: dict[str, Any]) -> str:
    return job["repo"] if job["repo_type"] == "model" else f"{job['repo_type']}s/{job['repo']}"


@mirror_command.command("rm")
@click.argument("repo_id")
@repo_type_option
@_run
async def rm_command(repo_id: str, repo_type: str) -> None:
    """Stop mirroring REPO_ID (its files stay in the store; `mreg rm` removes them)."""
    path, query = _job_path(repo_id, repo_type)
    await _call("DELETE", path + query)
    click.echo(f"stopped mirroring {repo_id}")


@mirror_command.command("sync")
@click.argument("repo_id", required=False)
@repo_type_option
@json_option
@_run
async def sync_command(repo_id: str | None, repo_type: str, as_json: bool) -> None:
    """Sync REPO_ID (or every job) now instead of at its next scheduled time."""
    if repo_id is None:
        answer = await _call("POST", "/v1/jobs/sync")
        message = f"syncing {answer['queued']} job(s)"
    else:
        path, query = _job_path(repo_id, repo_type)
        answer = await _call("POST", f"{path}/sync{query}")
        message = f"syncing {repo_id}"
    if as_json:
        _echo_json(answer)
    else:
        click.echo(message)
