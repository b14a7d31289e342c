"""`mreg modelfile` and `mreg ollama`: a repo's GGUF as an Ollama model (registered by `cli.main`)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Any

import click

from mreg.registry.config import Settings, resolve_token
from mreg.registry.errors import MregError, StoreError, UsageError
from mreg.registry.ollama.modelfile import PreparedModel, prepare_modelfile
from mreg.registry.ollama.store import OllamaName, default_name, models_dir, write_model
from mreg.registry.pull import PullOptions
from mreg.registry.repo import RepoRef
from mreg.registry.workspace import open_workspace

from mreg.cli.common import _echo_json, _run, json_option, revision_option
from mreg.cli.progress import pull_progress

quant_option = click.option("--quant", metavar="QUANT",
                            help="GGUF quant, any case (q4_k = Q4_K_M); default Q4_K_M, else another Q4.")
token_option = click.option("--token", help="Hub token (default: HF_TOKEN or huggingface_hub's saved token).")


def _say(text: str) -> None:
    click.echo(f"mreg: {text}", err=True)


async def _prepare(repo: RepoRef, quant: str | None, revision: str, token: str | None) -> PreparedModel:
    """Pull what the Modelfile needs (progress and the choice's reason on stderr) and build it."""
    settings = Settings.from_env()
    options = PullOptions(revision=revision, offline=settings.offline)
    progress = pull_progress()
    async with open_workspace(settings, resolve_token(token)) as ws:
        with progress:
            prepared = await prepare_modelfile(repo, quant, options, client=ws.client, store=ws.store,
                                               catalog=ws.catalog, progress=progress, announce=_say)
    for warning in prepared.warnings:
        _say(f"warning: {warning}")
    return prepared


def _summary(prepared: PreparedModel) -> dict[str, Any]:
    return {"repo": prepared.choice.repo.repo_id, "commit": prepared.result.commit, "quant": prepared.choice.label,
            "file_type": prepared.facts.file_type, "gguf": [str(p) for p in prepared.paths],
            "family": prepared.family.name if prepared.family else None, "reason": prepared.choice.reason,
            "warnings": list(prepared.warnings)}


def _write_text(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.mreg-tmp")
        tmp.write_text(text)
        tmp.replace(path)
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from exc


@click.command("modelfile")
@click.argument("repo_id")
@quant_option
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the Modelfile to FILE (default: stdout).")
@revision_option
@token_option
@json_option
@_run
async def modelfile_command(repo_id: str, quant: str | None, output: Path | None, revision: str, token: str | None,
                            as_json: bool) -> None:
    """Pull REPO_ID's GGUF and write a Modelfile for `ollama create` (FROM the local file)."""
    prepared = await _prepare(RepoRef.parse(repo_id), quant, revision, token)
    if output is not None:
        _write_text(output, prepared.text)
    if as_json:
        _echo_json({**_summary(prepared), "modelfile": str(output) if output else prepared.text})
    elif output is None:
        click.echo(prepared.text, nl=False)
    else:
        click.echo(str(output))


async def _ollama_create(binary: str, name: OllamaName, modelfile: str) -> str:
    """Run `ollama create NAME -f <Modelfile>`; return its output (MregError if it fails)."""
    with tempfile.TemporaryDirectory(prefix="mreg-") as folder:
        path = Path(folder) / "Modelfile"
        path.write_text(modelfile)
        proc = await asyncio.create_subprocess_exec(binary, "create", str(name), "-f", str(path),
                                                    stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.STDOUT)
        output, _ = await proc.communicate()
    text = output.decode(errors="replace").strip()
    if proc.returncode != 0:
        last = text.splitlines()[-1] if text else "no output"
        raise MregError(f"ollama create {name} failed (exit {proc.returncode}): {last} "
                        f"(is the Ollama server running? --direct writes its store without it)")
    return text


@click.command("ollama")
@click.argument("repo_id")
@quant_option
@click.option("--name", "name_text", metavar="NAME",
              help="Ollama model name, [namespace/]model[:tag] (default: the repo's name, lower case).")
@click.option("--direct", is_flag=True,
              help="Write into Ollama's store ($OLLAMA_MODELS) instead of running `ollama create`.")
@revision_option
@token_option
@json_option
@_run
async def ollama_command(repo_id: str, quant: str | None, name_text: str | None, direct: bool, revision: str,
                         token: str | None, as_json: bool) -> None:
    """Make REPO_ID's GGUF an Ollama model: `ollama create` when ollama is installed, else (or with
    --direct) written straight into Ollama's store."""
    repo = RepoRef.parse(repo_id)
    name = OllamaName.parse(name_text) if name_text else default_name(repo)
    binary = None if direct else shutil.which("ollama")
    prepared = await _prepare(repo, quant, revision, token)
    result: dict[str, Any] = {"name": str(name), **_summary(prepared)}
    if binary is not None:
        output = await _ollama_create(binary, name, prepared.text)
        if output and not as_json:
            click.echo(output, err=True)
        result["method"] = "ollama create"
    else:
        if len(prepared.parts) > 1:
            raise UsageError(f"{prepared.choice.label} of {prepared.choice.repo} is split in {len(prepared.parts)} "
                             f"files, which Ollama's store cannot hold as one model: pick another --quant")
        root = models_dir()
        model = await asyncio.to_thread(write_model, root, name, prepared.paths[0], prepared.parts[0].sha256,
                                        prepared.modelfile, prepared.facts)
        result.update(method="direct", manifest=str(model.manifest_path))
        if not as_json:
            _say(f"wrote {name} into the Ollama store {root} (ollama run {name})")
    if as_json:
        _echo_json(result)
    else:
        click.echo(str(name))
