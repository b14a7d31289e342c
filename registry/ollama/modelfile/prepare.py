"""A repo's Modelfile: pull the GGUF it needs, read what the files say, write the instructions.

`prepare_modelfile` is the one entry point: `mreg modelfile`, `mreg ollama` and the daemon's
`GET /v1/repos/{repo}/modelfile?quant=Q` all call it and use `PreparedModel.text`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mreg.registry.catalog import Catalog
from mreg.registry.gguf.pull import GGUFChoice, choose_gguf, pull_choice
from mreg.registry.upstream.hub import HubClient
from mreg.registry.pull import NullProgress, PulledFile, PullOptions, PullProgress, PullResult
from mreg.registry.repo import RepoRef
from mreg.registry.store import Store
from mreg.registry.ollama.modelfile.facts import ModelFacts, read_facts
from mreg.registry.ollama.modelfile.render import Modelfile, render
from mreg.registry.ollama.modelfile.templates import ChatFamily, default_system, recognise

NUM_CTX_CAP = 8192
"""The largest num_ctx written: the KV cache of a 128k-token context needs more memory than most
machines have (Ollama's own default is 4096); raise it per run with `/set parameter num_ctx`."""


@dataclass(frozen=True)
class PreparedModel:
    """A pulled GGUF with its Modelfile, and what went into it."""

    choice: GGUFChoice
    result: PullResult
    parts: tuple[PulledFile, ...]
    """The GGUF file(s), in order."""
    paths: tuple[Path, ...]
    """Their absolute local paths (FROM names the first)."""
    facts: ModelFacts
    family: ChatFamily | None
    modelfile: Modelfile
    warnings: tuple[str, ...]

    @property
    def text(self) -> str:
        return render(self.modelfile)


def build_modelfile(model: Path, facts: ModelFacts, comments: tuple[str, ...] = ()
                    ) -> tuple[Modelfile, ChatFamily | None, list[str]]:
    """The Modelfile of a GGUF at ``model`` (absolute) from its facts, with its chat family and the
    warnings worth telling (no template, an unknown one)."""
    warnings = []
    family = recognise(facts.chat_template) if facts.chat_template else None
    if facts.chat_template is None:
        warnings.append("the model has no chat template: no TEMPLATE written (Ollama will send prompts as they are)")
    elif family is None:
        warnings.append(f"the chat template (from {facts.chat_template_source}) is of no known family: no TEMPLATE "
                        f"written (ollama create guesses one from the GGUF)")
    parameters: list[tuple[str, str | int]] = [("stop", stop) for stop in family.stop] if family else []
    if facts.context_length:
        parameters.append(("num_ctx", min(facts.context_length, NUM_CTX_CAP)))
    system = default_system(facts.chat_template, family) if facts.chat_template else None
    modelfile = Modelfile(model=str(model), template=family.template if family else None, system=system,
                          parameters=tuple(parameters), license=facts.license, comments=comments)
    return modelfile, family, warnings


async def prepare_modelfile(repo: RepoRef, quant: str | None, options: PullOptions = PullOptions(), *,
                            client: HubClient, store: Store, catalog: Catalog,
                            progress: PullProgress = NullProgress(),
                            announce: Callable[[str], None] = lambda _: None) -> PreparedModel:
    """Choose and pull ``repo``'s GGUF in ``quant`` (None: the default; a discovered GGUF repo when
    ``repo`` has none) with its small files, then build its Modelfile.

    ``options`` gives the revision, offline mode and transfer tuning (its globs do not apply);
    ``announce`` hears which GGUF was chosen and why before anything is downloaded.
    """
    store.needs_local_files("writing a Modelfile")
    choice = await choose_gguf(repo, quant, options.revision, client=client, store=store, catalog=catalog,
                               offline=options.offline)
    announce(choice.reason)
    result = await pull_choice(choice, options, client=client, store=store, catalog=catalog, progress=progress)
    root = result.path.absolute()
    pulled = {f.path: f for f in result.files}
    local = {path: root / path for path in pulled}
    facts = await asyncio.to_thread(read_facts, local, choice.quant.files)
    comments = (f"Modelfile for {choice.repo} {choice.label} at {result.commit}, written by mreg",)
    modelfile, family, warnings = build_modelfile(local[choice.quant.files[0]], facts, comments)
    if len(choice.quant.files) > 1:
        warnings.append(f"{choice.label} is split in {len(choice.quant.files)} files: FROM names the first, "
                        f"which llama.cpp loads with the rest; Ollama may need them merged "
                        f"(llama-gguf-split --merge)")
    return PreparedModel(choice=choice, result=result, parts=tuple(pulled[p] for p in choice.quant.files),
                         paths=tuple(local[p] for p in choice.quant.files), facts=facts, family=family,
                         modelfile=modelfile, warnings=tuple(warnings))
