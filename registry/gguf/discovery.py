"""Finding a GGUF repo quantized from a repo that has none (`Qwen/Qwen2-7B` is safetensors only).

Candidates are the Hub's models tagged both `gguf` and `base_model:quantized:<repo>`, plus those
named `<name>-GGUF` (the common convention; such a repo is not always tagged). They are ranked by
organisation (the repo's own first), then downloads, and looked at in that order (at most
`MAX_CANDIDATES`): the first holding the quant asked for (or, with none asked, any GGUF) wins, and
the reason given says which repo it is and why. When none has the quant, the error lists the quants
each candidate has.

When there is no candidate at all, `NoGGUFError` is raised, and `registry.gguf.pull.choose_gguf`
falls back to converting the repo's safetensors locally.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mreg.registry.errors import (
    FormatError,
    GatedRepoError,
    NoGGUFError,
    QuantNotFoundError,
    RepoNotFoundError,
    RevisionNotFoundError,
)
from mreg.registry.upstream.hub import HubClient
from mreg.registry.gguf.quants import QuantChoice, gguf_sets, pick, remote_reader
from mreg.registry.repo import RepoRef

MAX_CANDIDATES = 8
"""Candidate repos whose files are listed before giving up (each costs two or three requests)."""
SEARCH_LIMIT = 50


@dataclass(frozen=True)
class Candidate:
    """A repo that may hold GGUF files of the base model, and what points to it."""

    repo: RepoRef
    downloads: int
    tagged: bool
    """Tagged `base_model:quantized:<base>`."""
    named: bool
    """Named `<base name>-GGUF`."""


@dataclass(frozen=True)
class Discovered:
    """The GGUF repo chosen for a base model, at a commit, with the quant picked in it."""

    repo: RepoRef
    commit: str
    choice: QuantChoice
    files: tuple[tuple[str, int], ...]
    reason: str


def _org(repo: RepoRef) -> str | None:
    return repo.repo_id.partition("/")[0] if "/" in repo.repo_id else None


def _name(repo: RepoRef) -> str:
    return repo.repo_id.rpartition("/")[2]


def rank(base: RepoRef, candidates: Iterable[Candidate]) -> list[Candidate]:
    """The base's own organisation first, then the most downloaded, then by id."""
    org = _org(base)
    return sorted(candidates, key=lambda c: (org is None or _org(c.repo) != org, -c.downloads, c.repo.repo_id))


async def find_candidates(client: HubClient, base: RepoRef) -> list[Candidate]:
    """Every GGUF repo the Hub tags as quantized from ``base`` or names after it, ranked."""
    tagged = await client.search_models(filters=("gguf", f"base_model:quantized:{base.repo_id}"), limit=SEARCH_LIMIT)
    named_as = f"{_name(base)}-GGUF".lower()
    named = await client.search_models(search=f"{_name(base)}-GGUF", filters=("gguf",), limit=SEARCH_LIMIT)
    found = {hit.repo_id: Candidate(RepoRef.parse(hit.repo_id), hit.downloads, True, False) for hit in tagged}
    for hit in named:
        if hit.repo_id.rpartition("/")[2].lower() == named_as:
            found[hit.repo_id] = Candidate(RepoRef.parse(hit.repo_id), hit.downloads, hit.repo_id in found, True)
    found.pop(base.repo_id, None)
    return rank(base, found.values())


def _why(base: RepoRef, candidate: Candidate) -> str:
    reasons = ["same organisation"] if _org(candidate.repo) == _org(base) else []
    if candidate.tagged:
        reasons.append(f"tagged base_model:quantized:{base.repo_id}")
    if candidate.named:
        reasons.append(f"named {_name(base)}-GGUF")
    return ", ".join([*reasons, f"{candidate.downloads:,} downloads"])


async def discover(client: HubClient, base: RepoRef, requested: str | None) -> Discovered:
    """The first ranked GGUF repo of ``base`` holding ``requested`` (normalised; None: any quant).

    Raises NoGGUFError when there is no candidate, QuantNotFoundError when none has the quant.
    """
    ranked = await find_candidates(client, base)
    if not ranked:
        raise NoGGUFError(base, f"{base} has no GGUF files and no GGUF repo quantized from it was found on "
                                f"{client.endpoint} (tagged base_model:quantized:{base.repo_id} or named "
                                f"{_name(base)}-GGUF)")
    passed: list[str] = []
    for candidate in ranked[:MAX_CANDIDATES]:
        try:
            commit = (await client.repo_info(candidate.repo, "main")).commit
            files = tuple((f.path, f.size) for f in await client.list_files(candidate.repo, commit))
            choice = await pick(gguf_sets(files), requested, remote_reader(client, candidate.repo, commit))
        except (RepoNotFoundError, RevisionNotFoundError, GatedRepoError, FormatError) as exc:
            passed.append(f"{candidate.repo}: {exc}")
            continue
        if choice.quant is not None:
            label = choice.quant.label or choice.file_type or choice.quant.name
            reason = (f"{base} has no GGUF files; using {candidate.repo} ({_why(base, candidate)}) for {label}"
                      + (f"; passed over {'; '.join(passed)}" if passed else ""))
            return Discovered(candidate.repo, commit, choice, files, reason)
        passed.append(f"{candidate.repo} has {', '.join(choice.available) or 'no usable GGUF'}")
    unseen = len(ranked) - MAX_CANDIDATES
    more = f" ({unseen} more candidates not looked at)" if unseen > 0 else ""
    raise QuantNotFoundError(f"no GGUF repo quantized from {base} has {requested or 'a usable GGUF'}: "
                             + "; ".join(passed) + more)
