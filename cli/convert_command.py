"""`mreg convert`: a repo's safetensors as a GGUF, converted locally (registered by `cli.main`)."""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn, TimeRemainingColumn

from typing import TYPE_CHECKING

from mreg.registry.config import Settings, resolve_token
from mreg.registry.repo import RepoRef
from mreg.registry.workspace import open_workspace

from mreg.cli.common import _echo_json, _run, json_option, revision_option
from mreg.cli.progress import PlainProgress, RichProgress, human_size

if TYPE_CHECKING:  # the converter imports numpy and gguf: only when a conversion runs
    from mreg.registry.convert.derive import Converted
    from mreg.registry.convert.mixes import Mix

QUANTS = ("f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k_s, q3_k_m, q3_k_l, q4_k_m"
          ", q4_k_s, q5_k_m, q5_k_s, q6_k")


class RichConvertProgress:
    """Two bars: tensors written, and bytes written."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._tensors: TaskID | None = None
        self._bytes: TaskID | None = None

    def start(self, tensors: int, nbytes: int) -> None:
        self._tensors = self._progress.add_task("converting: tensors", total=tensors)
        self._bytes = self._progress.add_task("converting: bytes", total=nbytes)

    def advance(self, nbytes: int) -> None:
        if self._bytes is not None:
            self._progress.advance(self._bytes, nbytes)

    def tensor_done(self, name: str) -> None:
        if self._tensors is not None:
            self._progress.advance(self._tensors, 1)


class PlainConvertProgress:
    """One line when the conversion starts and one when it ends."""

    def __init__(self) -> None:
        self._started = time.monotonic()
        self._nbytes = 0

    def start(self, tensors: int, nbytes: int) -> None:
        self._started, self._nbytes = time.monotonic(), nbytes
        click.echo(f"converting {tensors} tensors ({human_size(nbytes)})", err=True)

    def advance(self, nbytes: int) -> None:
        pass

    def tensor_done(self, name: str) -> None:
        pass

    def finish(self) -> None:
        if self._nbytes:
            click.echo(f"converted in {time.monotonic() - self._started:.1f} s", err=True)


@click.command("convert")
@click.argument("repo_id")
@revision_option
@click.option("--quant", required=True, metavar="QUANT",
              help=f"Output quant, any case: {QUANTS} (q3_k = q3_k_m, q4_k = q4_k_m, q5_k = q5_k_m).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Also put the GGUF at FILE (a plain file: a clone or a hard link to the stored one, as "
              "pull --local-dir does).")
@click.option("--token", help="Hub token (default: HF_TOKEN or huggingface_hub's saved token).")
@json_option
@_run
async def convert_command(repo_id: str, revision: str, quant: str, output: Path | None, token: str | None,
                          as_json: bool) -> None:
    """Convert REPO_ID's safetensors to a GGUF as llama.cpp would (pulling what is missing); keep it in
    the store and print its path last."""
    from mreg.registry.convert.mixes import parse_mix

    mix = parse_mix(quant)
    repo = RepoRef.parse(repo_id)
    settings = Settings.from_env()
    logging.getLogger("gguf").setLevel(logging.ERROR)
    result = await convert(repo, mix, revision, settings, resolve_token(token), output, quiet=as_json)
    if as_json:
        _echo_json({"repo": repo.repo_id, "commit": result.commit, "quant": result.quant, "path": str(result.path),
                    "sha256": result.sha256, "size": result.size, "reused": result.reused})
    else:
        click.echo(str(result.path))


async def convert(repo: RepoRef, mix: Mix, revision: str, settings: Settings, token: str | None,
                  output: Path | None, quiet: bool = False) -> Converted:
    """Run a conversion with progress on stderr (bars on a terminal, a few lines otherwise)."""
    from mreg.registry.convert.derive import convert_repo

    console = Console(stderr=True)
    rich = console.is_terminal and not quiet
    pull_progress = RichProgress(console) if rich else PlainProgress()
    bars = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeRemainingColumn(),
                    console=console)
    progress = RichConvertProgress(bars) if rich else PlainConvertProgress()
    async with open_workspace(settings, token) as ws:
        with pull_progress, (bars if rich else nullcontext()):
            result = await convert_repo(repo, mix, revision=revision, client=ws.client, store=ws.store,
                                        catalog=ws.catalog, offline=settings.offline, out=output,
                                        pull_progress=pull_progress, progress=progress)
    if isinstance(progress, PlainConvertProgress):
        progress.finish()
    if result.reused:
        click.echo(f"mreg: using the {mix.label} conversion of {repo}@{result.commit[:12]} made earlier", err=True)
    return result
