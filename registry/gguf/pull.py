"""Pulling a repo's GGUF: choose the quant (in the repo, or in a GGUF repo quantized from it), then
pull only that quant's file(s) plus the small metadata files (README, license, config, tokenizer,
chat template).

`choose_gguf` decides, reading at most a few headers over HTTP ranges (or from the store when
offline); `pull_choice` pulls what it chose; `pull_model` is what `mreg pull` runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mreg.registry.gguf.discovery import discover
from mreg.registry.blobs import holds
from mreg.registry.errors import (
    NoGGUFError,
    QuantNotFoundError,
    StoreError,
    UpstreamError,
    UpstreamUnavailableError,
    UsageError,
)
from mreg.registry.formats.summary import gguf_info
from mreg.registry.upstream.client import RemoteFile
from mreg.registry.upstream.hub import HubClient
from mreg.registry.upstream.client import RepoClient
from mreg.registry.inspect.reading import parse_blob
from mreg.registry.pull import NullProgress, PulledFile, PullOptions, PullProgress, PullResult, pull
from mreg.registry.gguf.quants import (
    DEFAULT_QUANT,
    FileTypeReader,
    QuantChoice,
    QuantSet,
    aliases,
    gguf_sets,
    metadata_files,
    normalize_quant,
    pick,
    remote_reader,
)
from mreg.registry.local import opened
from mreg.registry.repo import RepoRef
from mreg.registry.store import Store

if TYPE_CHECKING:
    from mreg.registry.catalog import Catalog
    from mreg.registry.local import CatalogOnDemand


@dataclass(frozen=True)
class GGUFChoice:
    """The GGUF file(s) to pull and from where, with the reason in one line."""

    repo: RepoRef
    """The repo the GGUF comes from: the one asked for, or a GGUF repo quantized from it."""
    revision: str
    commit: str
    quant: QuantSet
    file_type: str | None
    """`general.file_type` as the header says it (None if it says nothing)."""
    paths: frozenset[str]
    """The quant's file(s) and the metadata files: exactly what to pull."""
    reason: str
    convert: bool = False
    """The repo has no GGUF anywhere: the file is converted locally from its safetensors."""

    @property
    def label(self) -> str:
        return self.quant.label or self.file_type or self.quant.name


@dataclass(frozen=True)
class _Listing:
    repo: RepoRef
    revision: str
    commit: str
    files: tuple[tuple[str, int], ...]
    local: bool
    read_file_type: FileTypeReader
    remote: tuple[RemoteFile, ...] = ()
    """The upstream listing itself (empty when ``local``), for a pull that follows to reuse."""


def _stored_reader(store: Store, blobs: Mapping[str, str], otherwise: FileTypeReader | None) -> FileTypeReader:
    """Reads file types from the headers of stored blobs (``blobs``: path → sha256), and of other
    files with ``otherwise`` (None: they have no known type)."""

    async def read(path: str) -> str | None:
        sha = blobs.get(path)
        if sha is None:
            return await otherwise(path) if otherwise is not None else None
        info = await store.blobs.stat(sha)
        if info is None:
            raise StoreError(f"blob {sha} of {path} is not in the store")
        parsed = await parse_blob(store.blobs, sha, info.size, path)
        return gguf_info(parsed.metadata).file_type

    return read


async def _listing(repo: RepoRef, revision: str, client: RepoClient, store: Store,
                   catalog: Catalog | CatalogOnDemand, offline: bool) -> _Listing:
    """The repo's files at ``revision``: from upstream, or from the catalog when offline or unreachable.
    Headers are read from the store for the files it holds, over HTTP ranges for the others."""
    if not offline:
        try:
            commit = (await client.repo_info(repo, revision)).commit
            remote = await client.list_files(repo, commit)
            stored = {f.path: f.lfs_sha256 for f in remote
                      if f.lfs_sha256 is not None and await holds(store.blobs, f.lfs_sha256, f.size)}
            return _Listing(repo, revision, commit, tuple((f.path, f.size) for f in remote), False,
                            _stored_reader(store, stored, remote_reader(client, repo, commit)), tuple(remote))
        except UpstreamUnavailableError:
            catalog = await opened(catalog)
            if await catalog.resolve_revision(repo, revision) is None:
                raise
    catalog = await opened(catalog)
    local = await catalog.resolve_revision(repo, revision)
    if local is None:
        raise UsageError(f"offline, and {repo}@{revision} is not in the local store")
    records = await catalog.revision_files(repo, local)
    stored = {r.path: r.sha256 for r in records if r.state == "complete" and r.sha256}
    return _Listing(repo, revision, local, tuple((r.path, r.size) for r in records), True,
                    _stored_reader(store, stored, None))


def _paths(quant: QuantSet, files: Sequence[tuple[str, int]]) -> frozenset[str]:
    return frozenset(quant.files) | frozenset(metadata_files(files))


def _describe(repo: RepoRef, requested: str | None, choice: QuantChoice, quant: QuantSet) -> str:
    label = quant.label or choice.file_type or quant.name
    what = f"{len(quant.files)} files" if len(quant.files) > 1 else quant.files[0]
    if requested is None:
        others = f" among {', '.join(choice.available)}; --quant picks another" if len(choice.available) > 1 else ""
        return f"{repo}: {label} ({what}), the default quant{others}"
    alias = f" for {requested} ({' or '.join(aliases(requested)[1:3])})" if choice.alias_used else ""
    return f"{repo}: {label} ({what}){alias}"


async def _choose_in(listing: _Listing, sets: list[QuantSet], requested: str | None) -> GGUFChoice:
    choice = await pick(sets, requested, listing.read_file_type)
    if choice.quant is None:
        raise QuantNotFoundError(f"{listing.repo} has no {requested or 'complete'} GGUF; it has "
                                 f"{', '.join(choice.available)}")
    return GGUFChoice(listing.repo, listing.revision, listing.commit, choice.quant, choice.file_type,
                      _paths(choice.quant, listing.files), _describe(listing.repo, requested, choice, choice.quant))


async def choose_gguf(repo: RepoRef, quant: str | None, revision: str = "main", *, client: RepoClient,
                      store: Store, catalog: Catalog | CatalogOnDemand, offline: bool = False) -> GGUFChoice:
    """The GGUF to pull for ``repo``: the quant asked for (any spelling), or the default.

    Where it comes from, in order:
    1. the repo's own GGUF files (from the store's catalog when offline or upstream is unreachable);
    2. the best GGUF repo quantized from it (`discovery.discover`), when it has none;
    3. a local conversion of its safetensors (`registry.convert`), when step 2 finds no repo
       (`NoGGUFError`) and the quant is one mreg converts to; `pull_choice` then converts.
    """
    requested = normalize_quant(quant) if quant is not None else None
    listing = await _listing(repo, revision, client, store, catalog, offline)
    sets = gguf_sets(listing.files)
    if sets:
        return await _choose_in(listing, sets, requested)
    if listing.local:
        raise QuantNotFoundError(f"{repo}@{listing.commit[:12]} has no GGUF files (offline: no search for a "
                                 f"GGUF repo quantized from it)")
    if not isinstance(client, HubClient):
        raise QuantNotFoundError(f"{repo}@{listing.commit[:12]} has no GGUF files (searching for a GGUF repo "
                                 f"quantized from it needs the Hub: name the GGUF repo instead)")
    try:
        found = await discover(client, repo, requested)
    except NoGGUFError as exc:
        return _conversion(listing, requested, exc)
    assert found.choice.quant is not None
    return GGUFChoice(found.repo, "main", found.commit, found.choice.quant, found.choice.file_type,
                      _paths(found.choice.quant, found.files), found.reason)


def _conversion(listing: _Listing, requested: str | None, missing: NoGGUFError) -> GGUFChoice:
    """The choice of converting the repo locally, when it has safetensors, a config and the quant
    is one mreg converts to; else ``missing`` itself."""
    from mreg.registry.convert.derive import gguf_name
    from mreg.registry.convert.mixes import parse_mix

    paths = {path for path, _ in listing.files}
    if "config.json" not in paths or not any(p.endswith(".safetensors") for p in paths):
        raise missing
    try:
        mix = parse_mix(requested or DEFAULT_QUANT)
    except UsageError:
        raise NoGGUFError(listing.repo, f"{missing}, and {requested} is not a quant mreg converts to") from None
    name = gguf_name(listing.repo, mix)
    quant = QuantSet(name=name, label=mix.label, files=(name,), size=0, parts=1)
    reason = (f"{listing.repo} has no GGUF files and no GGUF repo quantized from it was found; converting its "
              f"safetensors to {mix.label} locally")
    return GGUFChoice(listing.repo, listing.revision, listing.commit, quant, mix.label, frozenset(), reason,
                      convert=True)


async def pull_choice(choice: GGUFChoice, options: PullOptions, *, client: RepoClient, store: Store,
                      catalog: Catalog | CatalogOnDemand, progress: PullProgress = NullProgress()) -> PullResult:
    """Pull exactly ``choice.paths`` (the globs of ``options`` do not apply) at ``choice.revision``;
    for a conversion, pull the safetensors and convert them (the result's folder is the converted file's)."""
    if choice.convert:
        return await _convert_choice(choice, options, client, store, catalog, progress)
    exact = dataclasses.replace(options, revision=choice.revision, include=(), exclude=(), paths=choice.paths)
    result = await pull(choice.repo, exact, client=client, store=store, catalog=catalog, progress=progress)
    pulled = {f.path for f in result.files}
    missing = [p for p in choice.quant.files if p not in pulled]
    if missing:
        raise UpstreamError(f"{choice.repo} changed during the pull ({missing[0]} is gone): run it again")
    return result


async def _convert_choice(choice: GGUFChoice, options: PullOptions, client: RepoClient, store: Store,
                          catalog: Catalog | CatalogOnDemand, progress: PullProgress) -> PullResult:
    from mreg.registry.convert.derive import convert_repo
    from mreg.registry.convert.mixes import parse_mix

    assert choice.quant.label is not None
    out = options.local_dir / choice.quant.files[0] if options.local_dir is not None else None
    done = await convert_repo(choice.repo, parse_mix(choice.quant.label), revision=choice.revision, client=client,
                              store=store, catalog=await opened(catalog), offline=options.offline, out=out,
                              out_copy=options.local_dir_copy,
                              pull_progress=progress)
    return PullResult(repo=choice.repo, commit=done.commit, path=done.path.parent,
                      files=[PulledFile(choice.quant.files[0], done.size, done.sha256)], fetched=done.fetched,
                      source=done.source)


async def _default_choice(repo: RepoRef, options: PullOptions, client: RepoClient, store: Store,
                          catalog: Catalog | CatalogOnDemand) -> tuple[GGUFChoice | None, _Listing | None]:
    """The default quant of a repo holding several (None for any other repo, pulled whole), and the
    listing it was chosen from."""
    try:
        listing = await _listing(repo, options.revision, client, store, catalog, options.offline)
    except UpstreamUnavailableError:
        return None, None  # the pull itself falls back to the store or says what failed
    sets = gguf_sets(listing.files)
    if sum(s.complete for s in sets) < 2:
        return None, listing
    return await _choose_in(listing, sets, None), listing


async def pull_model(repo: RepoRef, quant: str | None, options: PullOptions, *, client: RepoClient, store: Store,
                     catalog: Catalog | CatalogOnDemand, progress: PullProgress = NullProgress(),
                     announce: Callable[[str], None] = lambda _: None) -> tuple[PullResult, GGUFChoice | None]:
    """`mreg pull`: with ``quant``, that quant's GGUF (from a discovered repo if the repo has none);
    without, and without globs, only the default quant of a repo holding several GGUF quants; else
    the files the globs select. ``announce`` hears which GGUF was chosen and why, before the pull."""
    listing: _Listing | None = None
    if quant is not None:
        choice: GGUFChoice | None = await choose_gguf(repo, quant, options.revision, client=client, store=store,
                                                      catalog=catalog, offline=options.offline)
    elif options.include or options.exclude or options.paths is not None or repo.repo_type != "model":
        choice = None
    else:
        choice, listing = await _default_choice(repo, options, client, store, catalog)
    if choice is None:
        listed = (listing.commit, listing.remote) if listing is not None and not listing.local else None
        result = await pull(repo, options, client=client, store=store, catalog=catalog, progress=progress,
                            listed=listed)
        return result, None
    announce(choice.reason)
    return await pull_choice(choice, options, client=client, store=store, catalog=catalog, progress=progress), choice
